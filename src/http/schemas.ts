/** Response shapes shared by the API's routes (and so by its OpenAPI document). */
import Type from "typebox";
import { JOB_STATES } from "../lifecycle/jobs.ts";

const DateTime = Type.String({ format: "date-time" });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.Optional(Type.String({ description: "Fastify's error code, e.g. FST_ERR_VALIDATION, when Fastify raised the error" })),
    error: Type.String(),
    message: Type.String(),
    state: Type.Optional(Type.Enum(JOB_STATES)),
  },
  { $id: "ErrorResponse" },
);

export const JobEvent = Type.Object({
  id: Type.String(),
  event: Type.String(),
  attempt: Nullable(Type.Integer()),
  source: Nullable(Type.String()),
  workerId: Nullable(Type.String()),
  actor: Nullable(Type.String()),
  error: Nullable(Type.String()),
  stack: Nullable(Type.String()),
  durationMs: Nullable(Type.Number()),
  runAt: Nullable(DateTime),
  traceId: Nullable(Type.String()),
  at: DateTime,
});

const jobSummaryFields = {
  id: Type.String(),
  task: Type.String(),
  queue: Nullable(Type.String()),
  state: Type.Enum(JOB_STATES),
  source: Type.String(),
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  priority: Type.Integer(),
  jobKey: Nullable(Type.String()),
  lastError: Nullable(Type.String()),
  runAt: DateTime,
  createdAt: DateTime,
  startedAt: Nullable(DateTime),
  finishedAt: Nullable(DateTime),
};

export const JobSummary = Type.Object({ ...jobSummaryFields, links: Type.Object({ self: Type.String() }) });
export const JobDetails = Type.Object({
  ...jobSummaryFields,
  links: Type.Object({ self: Type.String() }),
  payload: Type.Unknown({ description: "As stored in history: sensitive fields redacted, large payloads summarised." }),
  timeline: Type.Array(JobEvent),
  children: Type.Union(
    [
      Type.Object({
        total: Type.Integer(),
        waiting: Type.Integer({ description: "Queued, scheduled or waiting to retry" }),
        running: Type.Integer(),
        succeeded: Type.Integer(),
        dead: Type.Integer(),
        cancelled: Type.Integer(),
        discarded: Type.Integer(),
      }),
      Type.Null(),
    ],
    { description: "Jobs this job enqueued (fan-out batches) by state: its progress. Null when none." },
  ),
});

export const EnqueuedResponse = Type.Object({
  jobId: Type.String(),
  task: Type.String(),
  state: Type.Enum(JOB_STATES),
  queue: Nullable(Type.String()),
  runAt: DateTime,
  links: Type.Object({ self: Type.String() }),
});

export const EnqueueQuery = Type.Object(
  {
    runAt: Type.Optional(Type.String({ format: "date-time", description: "Run at this time instead of now." })),
    priority: Type.Optional(Type.Integer({ minimum: -32768, maximum: 32767, description: "Lower runs first." })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 32767 })),
    jobKey: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: "A pending job with this key is replaced." })),
    queue: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "Named queue (jobs in it run one at a time)." })),
  },
  { additionalProperties: false },
);

export const IdempotencyHeaders = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: "A retried request with the same key returns the same job." }),
  ),
});
