/** Largest payload kept whole in job history (bytes of JSON); bigger ones are stored as a summary. */
export const HISTORY_PAYLOAD_MAX_BYTES = 16 * 1024;

/** Error stacks kept in history are cut to this many characters. */
export const HISTORY_STACK_MAX_CHARS = 4000;
