/**
 * The image's command (the Dockerfile's CMD), read from the Dockerfile itself so the benchmark runs
 * what ships: the footprint scenario starts the compiled entry point with it, and the service's
 * subject process gets its Node flags (the heap sizing the image starts Node with).
 */
import { finalStage, readDockerfile } from "../../test/helpers/dockerfile.ts";

const parsed = await readDockerfile();
const cmd = finalStage(parsed).instructions.findLast((instruction) => instruction.keyword === "CMD")?.execForm;
if (!cmd || cmd[0] !== "node") throw new Error("the Dockerfile's CMD is not an exec-form `node …` command");

/** The arguments after `node`: flags, then the entry point. */
export const IMAGE_NODE_ARGS: readonly string[] = cmd.slice(1);

/**
 * The image's Node flags without `--import` (the instrumentation preload, which the subject does not
 * use: it traces nothing) and without the entry point.
 */
export const IMAGE_NODE_FLAGS: readonly string[] = IMAGE_NODE_ARGS.slice(0, -1).filter((arg, index, args) => arg !== "--import" && args[index - 1] !== "--import");
