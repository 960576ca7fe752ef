/**
 * How the deployment runs the image besides its default command: the pre-deploy migration.
 * The smoke test runs it, and the Terraform test checks the Cloud Run Job runs the same.
 */
export const MIGRATE_COMMAND = ["node", "bin/observing-jobs.js", "migrate"] as const;

/** The environment replayed build steps inherit (PATH to Node 24, npm's cache), as a builder's shell would. */
export function builderEnvironment(): Record<string, string | undefined> {
  return { ...process.env };
}
