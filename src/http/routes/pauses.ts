/**
 * Pausing and resuming a task, a named queue or a cap group (src/lifecycle/pauses.ts): new attempts
 * stop on every instance within about a second, running ones finish, jobs keep arriving and wait.
 * Both writes are idempotent and recorded with the caller; `GET /pauses` also shows the history.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { findPauseEvents, findPauses } from "../../db/repositories/pauses.ts";
import { PAUSE_KINDS, PAUSE_REASON_MAX_CHARS, pause, resume, type Pause } from "../../lifecycle/pauses.ts";
import type { AppDependencies } from "../dependencies.ts";
import { RATE_LIMITED } from "../rate-limit.ts";
import { AUTHENTICATED_ERRORS, errorResponses, NoQuery, OPTIONAL_BODY, PauseSchema } from "../schemas.ts";

/** Pause and resume events `GET /pauses` shows, newest first. */
const HISTORY_SHOWN = 50;

const Target = Type.Object(
  {
    kind: Type.Enum(PAUSE_KINDS, { description: "task, queue (a named queue) or group (a cap group)" }),
    name: Type.String({ minLength: 1, maxLength: 200, description: "The task's, queue's or group's name" }),
  },
  { additionalProperties: false },
);
const Reason = Type.String({ maxLength: PAUSE_REASON_MAX_CHARS, description: "Why, for the history and the dashboard (e.g. \"GBIF is down\")" });
const PauseBody = Type.Object({ reason: Type.Optional(Reason) }, { additionalProperties: false });
const ResumeQuery = Type.Object({ reason: Type.Optional(Reason) }, { additionalProperties: false });
const PauseEventSchema = Type.Object({
  kind: Type.Enum(PAUSE_KINDS),
  name: Type.String(),
  action: Type.Enum(["paused", "resumed"]),
  actor: Type.String(),
  reason: Type.Union([Type.String(), Type.Null()]),
  at: Type.String({ format: "date-time" }),
});
const notFound = { 404: { ...errorResponses(404)[404], description: "No such task, cap group or queue (the message suggests the closest name)" } };
const writeErrors = { ...errorResponses(...AUTHENTICATED_ERRORS, 413, 415, 429), ...notFound };

/** A pause as the API shows it (null stays null). */
export function pauseJson(pause: Pause): ReturnType<typeof serialize>;
export function pauseJson(pause: Pause | undefined | null): ReturnType<typeof serialize> | null;
export function pauseJson(pause: Pause | undefined | null) {
  return pause ? serialize(pause) : null;
}
const serialize = (pause: Pause) => ({ ...pause, pausedAt: pause.pausedAt.toISOString() });

const pauseRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  const { db, registry } = deps;

  // A PUT without a body pauses without a reason.
  app.addHook("preValidation", async (request) => {
    if (request.method === "PUT" && request.body === undefined && !request.headers["content-type"]) request.body = {};
  });

  app.get(
    "/pauses",
    {
      schema: {
        operationId: "listPauses",
        summary: "What is paused now, and the latest pause and resume events",
        tags: ["pauses"],
        querystring: NoQuery,
        response: {
          200: Type.Object({ pauses: Type.Array(PauseSchema), events: Type.Array(PauseEventSchema, { description: `The latest ${HISTORY_SHOWN}, newest first` }) }),
          ...errorResponses(...AUTHENTICATED_ERRORS),
        },
      },
    },
    async () => {
      const [pauses, events] = await Promise.all([findPauses(db), findPauseEvents(db, HISTORY_SHOWN)]);
      return { pauses: pauses.map((pause) => pauseJson(pause)), events: events.map((event) => ({ ...event, at: event.at.toISOString() })) };
    },
  );

  app.put(
    "/pauses/:kind/:name",
    {
      schema: {
        operationId: "pause",
        summary: "Pause a task, a named queue or a cap group: no new attempt starts on any instance; running ones finish, new jobs wait",
        description: "Idempotent: pausing what is paused keeps the first pause (its author, time and reason) and answers changed: false.",
        tags: ["pauses"],
        params: Target,
        querystring: NoQuery,
        body: PauseBody,
        [OPTIONAL_BODY]: true,
        response: { 200: Type.Object({ paused: Type.Literal(true), changed: Type.Boolean({ description: "False when it was paused already" }), pause: PauseSchema }), ...writeErrors },
      },
      config: RATE_LIMITED,
    },
    async (request) => {
      const { kind, name } = request.params;
      const result = await pause(db, registry, kind, name, request.caller.id, request.body.reason);
      if (result.created) request.log.info({ caller: request.caller.id, kind, name }, "paused by operator");
      return { paused: true as const, changed: result.created, pause: pauseJson(result.pause) };
    },
  );

  app.delete(
    "/pauses/:kind/:name",
    {
      schema: {
        operationId: "resume",
        summary: "Resume a paused task, named queue or cap group: its waiting jobs start at once",
        description: "Idempotent: resuming what is not paused answers changed: false.",
        tags: ["pauses"],
        params: Target,
        querystring: ResumeQuery,
        response: {
          200: Type.Object({
            paused: Type.Literal(false),
            changed: Type.Boolean({ description: "False when it was not paused" }),
            resumed: Type.Union([PauseSchema, Type.Null()], { description: "The pause this ended" }),
          }),
          ...writeErrors,
        },
      },
      config: RATE_LIMITED,
    },
    async (request) => {
      const { kind, name } = request.params;
      const ended = await resume(db, registry, kind, name, request.caller.id, request.query.reason);
      if (ended) request.log.info({ caller: request.caller.id, kind, name }, "resumed by operator");
      return { paused: false as const, changed: ended !== null, resumed: ended ? pauseJson(ended) : null };
    },
  );
};

export default pauseRoutes;
