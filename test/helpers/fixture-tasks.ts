/** The test-only task files (test/fixtures/tasks), loaded beside the real ones. */
import path from "node:path";
import { loadRegistry, TaskRegistry } from "../../src/registry.ts";

export const FIXTURE_TASKS_DIRECTORY = path.resolve(import.meta.dirname, "../fixtures/tasks");

/** The real tasks plus the fixtures, e.g. `block_event_loop`. */
export async function loadRegistryWithFixtureTasks(): Promise<TaskRegistry> {
  return new TaskRegistry([...(await loadRegistry()).all(), ...(await loadRegistry(FIXTURE_TASKS_DIRECTORY)).all()]);
}
