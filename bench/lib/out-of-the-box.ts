/**
 * SubjectOptions.localQueueSize for each system as it comes: graphile-worker with its library
 * defaults, the service with its own. A leaf module: the subject process and the scenarios share it.
 */
export const OUT_OF_THE_BOX = -1;
