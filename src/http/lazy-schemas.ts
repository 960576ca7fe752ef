/**
 * Route schemas compiled when a route is first used instead of when the server starts. Fastify
 * compiles every route's request validators (Ajv) and response serializers (fast-json-stringify)
 * before it listens: about a tenth of the service's start-up CPU, for routes that mostly wait
 * minutes (the API, the dashboard) or forever (the rarely used ones) for their first request
 * (docs/BENCHMARKS.md, "Lean process"). A route's first request pays its own compilation instead,
 * a few milliseconds. The schemas, and what they accept, are the same.
 */
import SerializerSelector from "@fastify/fast-json-stringify-compiler";

/** Fastify's serializer factory (`schemaController.compilersFactory.buildSerializer`), compiling on first reply. */
export function lazySerializerFactory(): SerializerSelector.SerializerFactory {
  const eager = SerializerSelector();
  return (externalSchemas, options) => {
    const compileRoute = eager(externalSchemas, options);
    return (route) => {
      let serialize: SerializerSelector.Serializer | undefined;
      return (document) => (serialize ??= compileRoute(route))(document);
    };
  };
}
