import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", ".data/", "artifacts/", "coverage/", ".contributing-*/", ".openapi-client-*/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // Task files declare their payload type into graphile-worker's global task map.
      "@typescript-eslint/no-namespace": ["error", { allowDeclarations: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-properties": [
        "error",
        { object: "process", property: "env", message: "Read settings through src/config.ts, the one place that parses the environment." },
      ],
    },
  },
  {
    // The config module parses the environment; test and tooling entry points hand it on.
    files: ["src/config.ts", "test/global-setup.ts", "test/helpers/**", "vitest.config.ts", "bench/**", "scripts/**"],
    rules: { "no-restricted-properties": "off" },
  },
  {
    // One copy of the OpenTelemetry API at start-up: src/observability/otel-api.ts requires the
    // CommonJS build that prom-client loads; importing the package's ES module build loads a second one.
    files: ["src/**/*.ts", "tasks/**/*.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        { paths: [{ name: "@opentelemetry/api", allowTypeImports: true, message: "Import values from src/observability/otel-api.ts (types may come from the package)." }] },
      ],
    },
  },
  {
    // bin/check-node.cjs runs before anything else, on whatever Node the machine has: CommonJS.
    files: ["**/*.cjs"],
    languageOptions: { sourceType: "commonjs" },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
