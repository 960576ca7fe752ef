/**
 * The Dockerfile as data, read with a real Dockerfile parser (dockerfile-ast, the one behind the
 * VS Code Docker extension): build arguments and stages, each with its instructions in order.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { DockerfileParser, Env, JSONInstruction, ModifiableInstruction, type Instruction } from "dockerfile-ast";

export const DOCKERFILE = path.resolve(import.meta.dirname, "../../Dockerfile");

export interface DockerInstruction {
  keyword: string;
  /** Arguments after the flags, with global build arguments substituted. */
  args: string[];
  /** `--from=build` → { from: "build" }. */
  flags: Record<string, string | null>;
  /** The JSON array of an exec-form instruction (CMD ["node", …]); null in shell form. */
  execForm: string[] | null;
  /** The arguments as written, after the flags: RUN's shell command. */
  text: string;
  /** ENV's name=value pairs; empty for other instructions. */
  env: Record<string, string>;
}

export interface DockerStage {
  name: string | null;
  image: string;
  instructions: DockerInstruction[];
}

export interface ParsedDockerfile {
  args: Record<string, string>;
  stages: DockerStage[];
}

export async function readDockerfile(file = DOCKERFILE): Promise<ParsedDockerfile> {
  return parseDockerfile(await readFile(file, "utf8"));
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const dockerfile = DockerfileParser.parse(text);
  const args: Record<string, string> = {};
  for (const arg of dockerfile.getInitialARGs()) {
    for (const property of arg.getProperties()) args[property.getName()] = property.getUnescapedValue() ?? "";
  }
  const substitute = (value: string) => value.replace(/\$\{?(\w+)\}?/g, (match, name: string) => args[name] ?? match);

  const stages: DockerStage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    if (keyword === "FROM") {
      const words = instruction.getArguments().map((argument) => argument.getValue());
      const asIndex = words.findIndex((word) => word.toUpperCase() === "AS");
      stages.push({ name: asIndex >= 0 ? words[asIndex + 1]! : null, image: substitute(words[0]!), instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage) stage.instructions.push(describe(instruction, substitute));
  }
  return { args, stages };
}

function describe(instruction: Instruction, substitute: (value: string) => string): DockerInstruction {
  const flags: Record<string, string | null> = {};
  if (instruction instanceof ModifiableInstruction) {
    for (const flag of instruction.getFlags()) flags[flag.getName()] = flag.getValue();
  }
  const execForm =
    instruction instanceof JSONInstruction && instruction.getOpeningBracket() !== null
      ? instruction.getJSONStrings().map((argument) => argument.getJSONValue())
      : null;
  const env: Record<string, string> = {};
  if (instruction instanceof Env) {
    for (const property of instruction.getProperties()) env[property.getName()] = property.getUnescapedValue() ?? "";
  }
  return {
    env,
    keyword: instruction.getKeyword(),
    args: instruction.getArguments().map((argument) => substitute(argument.getValue())),
    flags,
    execForm,
    text: (instruction.getArgumentsContent() ?? "").replace(/^(--\S+\s+)*/, ""),
  };
}

/** The stage the image is built from: the last one. */
export function finalStage(parsed: ParsedDockerfile): DockerStage {
  const stage = parsed.stages.at(-1);
  if (!stage) throw new Error("the Dockerfile has no FROM");
  return stage;
}

/** ENV settings of a stage, in order (later ones win). */
export function stageEnvironment(stage: DockerStage): Record<string, string> {
  return Object.assign({}, ...stage.instructions.map((instruction) => instruction.env)) as Record<string, string>;
}
