/** Response shapes shared by the API's routes (and so by its OpenAPI document). */
import Type from "typebox";
import { DATE_TIME_DESCRIPTION, JOB_ID_PATTERN } from "../input-limits.ts";
import { JOB_STATES } from "../lifecycle/jobs.ts";

const DateTime = Type.String({ format: "date-time" });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const errorFields = {
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String({ description: "Fastify's error code, e.g. FST_ERR_VALIDATION, when Fastify raised the error" })),
  error: Type.String(),
  message: Type.String(),
  state: Type.Optional(Type.Enum(JOB_STATES, { description: "The job's current state (409)." })),
};

export const ErrorResponse = Type.Object(errorFields, { $id: "ErrorResponse" });

const ERROR_DESCRIPTIONS = {
  400: "Invalid request: the message names each bad field (an unknown query parameter, a value the database cannot store, malformed JSON)",
  401: "No valid credential: send Authorization: Bearer <ID token or API token>",
  403: "The caller is not on the allowlist, or the request came from another site",
  404: "No job with this id",
  409: "The action does not apply to the job's current state (given as state)",
  413: "The body is larger than HTTP_BODY_LIMIT_BYTES",
  415: "The body is not JSON",
  429: "Too many requests from this caller (HTTP_RATE_LIMIT_MAX per HTTP_RATE_LIMIT_WINDOW_MS); retry after Retry-After seconds",
  503: "ID tokens cannot be verified right now (Google's signing keys are out of reach): retry",
} as const;
type ErrorStatus = keyof typeof ERROR_DESCRIPTIONS;

/** The error answers an operation can give, each documented with when it happens. */
export function errorResponses<S extends ErrorStatus>(...statuses: S[]): Record<S, typeof ErrorResponse> {
  return Object.fromEntries(
    statuses.map((status) => {
      const schema = Type.Object(errorFields, { description: ERROR_DESCRIPTIONS[status] });
      if (status !== 429) return [status, schema];
      return [status, { ...schema, headers: { "retry-after": Type.Integer({ minimum: 0, description: "Seconds until this caller may send again." }) } }];
    }),
  ) as Record<S, typeof ErrorResponse>;
}

/** Every route behind authentication: a bad query, a bad or refused credential, signing keys out of reach. */
export const AUTHENTICATED_ERRORS = [400, 401, 403, 503] as const;

/** Operation-level marker (an OpenAPI extension) for a request body that may be left out; see app.ts. */
export const OPTIONAL_BODY = "x-optional-body";

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
  result: Type.Unknown({
    description:
      "What the task returned, once the job succeeded (null before, or when it returned nothing): JSON, sensitive fields redacted, at most 16 KiB (a larger result is `{ truncated: true, bytes, limit }`).",
  }),
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

/** The query string of a route that takes no parameters: anything in it is refused, not ignored. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

/** A job id in a path or a cursor: what PostgreSQL's bigint holds. */
export const JobIdString = (description: string) => Type.String({ pattern: JOB_ID_PATTERN, description: `${description} (1 to 9223372036854775807)` });

/** A date-time a caller sends: a real instant PostgreSQL and JavaScript both hold (see src/input-limits.ts). */
export const InstantString = (description: string) => Type.String({ format: "date-time", description: `${description} ${DATE_TIME_DESCRIPTION}.` });

const enqueueOptions = {
  runAt: Type.Optional(InstantString("Run at this time instead of now.")),
  priority: Type.Optional(Type.Integer({ minimum: -32768, maximum: 32767, description: "Lower runs first." })),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 32767 })),
  queue: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "Named queue (jobs in it run one at a time)." })),
};

/** The longest `?wait=`: under Cloud Run's and common proxies' request time limits. */
export const MAX_WAIT_MS = 60_000;

export const EnqueueQuery = Type.Object(
  {
    ...enqueueOptions,
    jobKey: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: "A pending job with this key is replaced." })),
    wait: Type.Optional(
      Type.String({
        maxLength: 16,
        description:
          "Wait up to this long for the job to end: `30s`, `1500ms`, or plain seconds (`30`); at most 60s. Ended within it: 200 with the job (state succeeded, dead or cancelled) and its result. Otherwise the usual 202.",
      }),
    ),
  },
  { additionalProperties: false },
);

/** A batch takes the same options but no job key (each payload has its own, from its task). */
export const BatchEnqueueQuery = Type.Object(enqueueOptions, { additionalProperties: false });

export const IdempotencyHeaders = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: "A retried request with the same key returns the same job." }),
  ),
});

/** A pause in force (src/lifecycle/pauses.ts): what, who, when and why. */
export const PauseSchema = Type.Object(
  {
    kind: Type.Enum(["task", "queue", "group"], { description: "A task, a named queue, or a cap group (defaults.concurrency.group)" }),
    name: Type.String(),
    pausedBy: Type.String({ description: "The caller, dashboard user or CLI user who paused it" }),
    reason: Nullable(Type.String()),
    pausedAt: DateTime,
  },
  { description: "A pause in force: new attempts do not start, running ones finish, jobs keep arriving and wait" },
);
