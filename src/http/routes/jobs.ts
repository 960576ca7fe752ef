/**
 * The jobs API. Every task gets its own `POST /jobs/<task>` route whose body schema is the very
 * schema object the task file exports, so the API, the worker and the OpenAPI document agree.
 * Nothing is enqueued unless the whole request is valid.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifySchemaValidationError } from "fastify/types/schema.js";
import pg from "pg";
import Type from "typebox";
import { enqueueJob, enqueueJobs } from "../../enqueue.ts";
import { JobEndWaits } from "../../lifecycle/job-end-waits.ts";
import { HttpError } from "../errors.ts";
import {
  cancelJob,
  discardJob,
  findJob,
  findJobByKey,
  JOB_STATES,
  JobNotFoundError,
  listJobs,
  retryJob,
  type JobDetails,
  type JobState,
} from "../../lifecycle/jobs.ts";
import { jobDetailsJson, jobLink, jobSummaryJson } from "../../lifecycle/job-json.ts";
import { parseInstant } from "../../input-limits.ts";
import { describeSchemaError } from "../../payload-validation.ts";
import { UnknownTaskError, type RegisteredTask } from "../../registry.ts";
import type { EnqueuedJob, EnqueueOptions } from "../../task.ts";
import { noteOutcome } from "../../observability/request-log.ts";
import type { AppDependencies } from "../dependencies.ts";
import { RATE_LIMITED } from "../rate-limit.ts";
import {
  AUTHENTICATED_ERRORS,
  BatchEnqueueQuery,
  EnqueuedResponse,
  EnqueueQuery,
  errorResponses,
  IdempotencyHeaders,
  InstantString,
  JobDetails as JobDetailsSchema,
  JobIdString,
  JobSummary as JobSummarySchema,
  MAX_WAIT_MS,
  NoQuery,
  OPTIONAL_BODY,
} from "../schemas.ts";

/** The session name of the LISTEN connection of `?wait=` (one per process). */
export const JOB_END_WAITS_APPLICATION_NAME = "observing-jobs job-end waits";
/** The most payloads one `POST /jobs/{task}/batch` request may carry. */
const MAX_PAYLOADS_PER_REQUEST = 1000;
const JobId = Type.Object({ id: JobIdString("Job id") }, { additionalProperties: false });
/** A 202 enqueue answer: the job in the body, and its URL in `Location` (generated clients read both). */
const Enqueued = Type.Object(EnqueuedResponse.properties, {
  description: "Enqueued; with a replayed Idempotency-Key, the job that request enqueued",
  headers: {
    location: Type.String({ description: "The job's URL relative to the service (links.self): GET it for state and history" }),
    "idempotent-replayed": Type.Optional(Type.Literal("true", { description: "Present when an earlier request with this Idempotency-Key enqueued the job" })),
  },
});
/** A `?wait=` answer: the job ended within the wait. */
const Finished = Type.Object(
  { jobId: Type.String({ description: "As in the 202 answer (the same as id), so a caller reads one field either way" }), ...JobDetailsSchema.properties },
  {
    description:
      "With ?wait=: the job ended within the wait. The job as GET /jobs/{id} shows it, plus jobId; `state` says how it ended (succeeded, dead or cancelled) and `result` is what it returned",
    headers: { location: Type.String({ description: "The job's URL relative to the service (links.self)" }) },
  },
);
const enqueueErrors = errorResponses(...AUTHENTICATED_ERRORS, 413, 415, 429);
const readErrors = errorResponses(...AUTHENTICATED_ERRORS);
const jobErrors = errorResponses(...AUTHENTICATED_ERRORS, 404);
const actionErrors = errorResponses(...AUTHENTICATED_ERRORS, 404, 409, 413, 415, 429);

/** Validation errors named the way the worker and the CLI name them ("payload/taxonIds must be array"). */
const formatErrors = (root: string) => (validationErrors: FastifySchemaValidationError[], dataVar: string) =>
  new Error(validationErrors.map((error) => describeSchemaError(error as Parameters<typeof describeSchemaError>[0], dataVar === "body" ? root : dataVar)).join("; "));

const jobRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  const { db, registry } = deps;
  // One LISTEN connection for every `?wait=` of this process, opened on the first; its own client, not one of the pool's.
  const jobEnds =
    deps.jobEnds ??
    new JobEndWaits({
      db,
      logger: deps.logger.child({ component: "job-end-waits" }),
      makeClient: () => new pg.Client({ ...deps.pool.options, application_name: JOB_END_WAITS_APPLICATION_NAME }),
    });
  // Before the server waits for requests in flight: at shutdown a caller still waiting gets its 202 at once.
  if (!deps.jobEnds) app.addHook("preClose", () => jobEnds.close());

  /** After a `?wait=`: 200 with the job when it ended within the wait, else the usual 202 with its state now. */
  async function answerAfterWait(request: FastifyRequest, reply: FastifyReply, enqueuedJob: EnqueuedJob | JobDetails, waitMs: number) {
    const jobId = enqueuedJob.id;
    // The caller going away ends the wait (its response can no longer be sent).
    const gone = new AbortController();
    const onClose = () => gone.abort();
    reply.raw.once("close", onClose);
    if (request.raw.socket?.destroyed) gone.abort();
    try {
      await jobEnds.waitForEnd(jobId, waitMs, gone.signal);
    } finally {
      reply.raw.off("close", onClose);
    }
    // Nobody to tell: no reading for a caller that went away.
    if (gone.signal.aborted) return reply.status(202).header("location", jobLink(jobId)).send(enqueued(enqueuedJob));
    const job = await findJob(db, jobId);
    if (!job) throw new JobNotFoundError(jobId);
    if (ENDED_STATES.has(job.state)) {
      request.log.info({ jobId, state: job.state }, "waited-for job ended");
      return reply.status(200).header("location", jobLink(job.id)).send({ jobId: job.id, ...jobDetailsJson(job) });
    }
    return reply.status(202).header("location", jobLink(job.id)).send(enqueued(job));
  }

  // A request without a body enqueues the task with an empty payload (its defaults).
  app.addHook("preValidation", async (request) => {
    if (request.method === "POST" && request.body === undefined && !request.headers["content-type"]) request.body = {};
  });

  for (const task of registry.all()) {
    if (task.internal) continue;
    registerTaskRoutes(task);
  }

  function registerTaskRoutes(task: RegisteredTask) {
    app.post(
      `/jobs/${task.name}`,
      {
        schema: {
          operationId: operationId("enqueue", task.name),
          summary: `Enqueue a ${task.name} job`,
          description: `${task.description} Without a body, the payload is the schema's defaults.`,
          tags: ["jobs"],
          body: task.schema,
          [OPTIONAL_BODY]: true,
          querystring: EnqueueQuery,
          headers: IdempotencyHeaders,
          response: { 200: Finished, 202: Enqueued, ...enqueueErrors },
        },
        config: RATE_LIMITED,
        schemaErrorFormatter: formatErrors("payload"),
      },
      async (request, reply) => {
        // Checked before anything is enqueued.
        const waitMs = request.query.wait === undefined ? 0 : parseWait(request.query.wait);
        const options = enqueueOptions(request.query);
        const idempotencyKey = request.headers["idempotency-key"];
        if (idempotencyKey) {
          if (options.jobKey) throw new HttpError(400, "send either an Idempotency-Key header or a jobKey, not both");
          options.jobKey = `idempotency:${task.name}:${idempotencyKey}`;
          // unsafe_dedupe: a retried request while the job waits gets that job, unchanged.
          options.jobKeyMode = "unsafe_dedupe";
          const earlier = await findJobByKey(db, options.jobKey);
          if (earlier) {
            reply.header("idempotent-replayed", "true");
            noteOutcome(request, { jobId: earlier.id, task: task.name, replayed: true });
            if (waitMs > 0) return answerAfterWait(request, reply, earlier, waitMs);
            return reply.status(202).header("location", jobLink(earlier.id)).send(enqueued(earlier));
          }
        }
        const job = await enqueueJob(db, registry, task.name, request.body, options, { source: "http", actor: request.caller.id });
        noteOutcome(request, { jobId: job.id, task: task.name });
        if (waitMs > 0) return answerAfterWait(request, reply, job, waitMs);
        return reply.status(202).header("location", jobLink(job.id)).send(enqueued(job));
      },
    );

    app.post(
      `/jobs/${task.name}/batch`,
      {
        schema: {
          operationId: operationId("enqueue", task.name, "batch"),
          summary: `Enqueue many ${task.name} jobs, all or nothing`,
          description:
            "Every payload is validated before anything is written. Payloads that map to the same job key (the same work) are one job: the last one wins, as enqueueing them one by one would, and `jobs` lists each job once.",
          tags: ["jobs"],
          body: Type.Object(
            { payloads: Type.Array(task.schema, { minItems: 1, maxItems: MAX_PAYLOADS_PER_REQUEST }) },
            { additionalProperties: false },
          ),
          querystring: BatchEnqueueQuery,
          response: { 202: Type.Object({ jobs: Type.Array(EnqueuedResponse) }), ...enqueueErrors },
        },
        config: RATE_LIMITED,
        schemaErrorFormatter: formatErrors("body"),
      },
      async (request, reply) => {
        const options = enqueueOptions(request.query);
        const jobs = await db
          .transaction()
          .execute((trx) => enqueueJobs(trx, registry, task.name, request.body.payloads, options, { source: "http", actor: request.caller.id }));
        noteOutcome(request, { task: task.name, enqueued: jobs.length });
        return reply.status(202).send({ jobs: jobs.map(enqueued) });
      },
    );
  }

  // Any other name: not a task this service runs (or not one the API may trigger).
  const unknownTask = Type.Object({ name: Type.String() });
  for (const path of ["/jobs/:name", "/jobs/:name/batch"]) {
    app.post(path, { schema: { hide: true, params: unknownTask } }, async (request) => {
      const { name } = request.params as { name: string };
      const task = registry.find(name);
      if (task?.internal) throw new HttpError(403, `task '${name}' is internal: it runs from the crontab only`);
      // Never suggest a task the API may not trigger.
      const closest = registry.suggest(name);
      throw new UnknownTaskError(name, closest && !registry.get(closest).internal ? closest : undefined);
    });
  }

  app.get(
    "/jobs",
    {
      schema: {
        operationId: "listJobs",
        summary: "List jobs, newest first",
        tags: ["jobs"],
        querystring: Type.Object(
          {
            task: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
            state: Type.Optional(Type.Enum(JOB_STATES)),
            queue: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
            from: Type.Optional(InstantString("Created at or after.")),
            to: Type.Optional(InstantString("Created before.")),
            cursor: Type.Optional(JobIdString("nextCursor of the previous page")),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ jobs: Type.Array(JobSummarySchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...readErrors },
      },
      schemaErrorFormatter: formatErrors("query"),
    },
    async (request) => {
      const { task, state, queue, from, to, cursor, limit } = request.query;
      const page = await listJobs(db, {
        limit: limit ?? 50,
        ...(task ? { task } : {}),
        ...(state ? { state } : {}),
        ...(queue ? { queue } : {}),
        ...(from ? { from: parseInstant(from)! } : {}),
        ...(to ? { to: parseInstant(to)! } : {}),
        ...(cursor ? { before: cursor } : {}),
      });
      return { jobs: page.jobs.map(jobSummaryJson), nextCursor: page.nextCursor };
    },
  );

  app.get(
    "/jobs/:id",
    {
      schema: { operationId: "getJob", summary: "A job's state and history", tags: ["jobs"], params: JobId, querystring: NoQuery, response: { 200: JobDetailsSchema, ...jobErrors } },
      schemaErrorFormatter: formatErrors("body"),
    },
    async (request) => {
      const job = await findJob(db, request.params.id);
      if (!job) throw new JobNotFoundError(request.params.id);
      return jobDetailsJson(job);
    },
  );

  const actions = { retry: retryJob, cancel: cancelJob, discard: discardJob } as const;
  const descriptions = {
    retry: "Send a dead (or failed, waiting) job back to the queue now, attempts reset",
    cancel: "Remove a job that has not started, and the jobs it enqueued that have not started (a backfill's pending batches)",
    discard: "Remove a dead job from the dead-letter",
  };
  for (const [name, action] of Object.entries(actions)) {
    app.post(
      `/jobs/:id/${name}`,
      {
        schema: {
          operationId: operationId(name, "job"),
          summary: descriptions[name as keyof typeof actions],
          tags: ["jobs"],
          params: JobId,
          querystring: NoQuery,
          response: { 200: JobDetailsSchema, ...actionErrors },
        },
        config: RATE_LIMITED,
        schemaErrorFormatter: formatErrors("body"),
      },
      // JobNotFoundError (404) and IllegalTransitionError (409, with the job's state) are mapped by the app's error handler.
      async (request) => {
        const job = await action(db, request.params.id, request.caller.id);
        request.log.info({ caller: request.caller.id, jobId: job.id, action: name }, `job ${name} by operator`);
        return jobDetailsJson(job);
      },
    );
  }
};

/** States a job does not leave by itself: a `?wait=` ends when the job reaches one. */
const ENDED_STATES: ReadonlySet<JobState> = new Set(["succeeded", "dead", "cancelled", "discarded"]);

/**
 * `?wait=` in milliseconds: `30s`, `1500ms` or plain seconds (`30`), from 0 (no wait) to
 * MAX_WAIT_MS. Anything else is the caller's mistake (400, naming `wait`).
 */
function parseWait(text: string): number {
  const match = /^(\d{1,6})(ms|s)?$/.exec(text);
  const ms = match ? Number(match[1]) * (match[2] === "ms" ? 1 : 1000) : Number.NaN;
  if (Number.isNaN(ms)) throw new HttpError(400, `querystring/wait must be a duration such as 30s, 1500ms or 30 (seconds), got "${text}"`);
  if (ms > MAX_WAIT_MS) throw new HttpError(400, `querystring/wait must be at most ${MAX_WAIT_MS / 1000}s, got "${text}"`);
  return ms;
}

function enqueueOptions(query: { runAt?: string; priority?: number; maxAttempts?: number; jobKey?: string; queue?: string }): EnqueueOptions {
  return {
    ...(query.runAt ? { runAt: parseInstant(query.runAt)! } : {}),
    ...(query.priority !== undefined ? { priority: query.priority } : {}),
    ...(query.maxAttempts !== undefined ? { maxAttempts: query.maxAttempts } : {}),
    ...(query.jobKey ? { jobKey: query.jobKey } : {}),
    ...(query.queue ? { queueName: query.queue } : {}),
  };
}

/** camelCase from snake_case words: ("enqueue", "resolve_taxa", "batch") → enqueueResolveTaxaBatch. */
function operationId(...words: string[]): string {
  const parts = words.flatMap((word) => word.split("_"));
  return parts.map((part, index) => (index === 0 ? part : part.charAt(0).toUpperCase() + part.slice(1))).join("");
}

const iso = (date: Date) => date.toISOString();

function enqueued(job: EnqueuedJob | JobDetails) {
  const links = { self: jobLink(job.id) };
  if ("state" in job) return { jobId: job.id, task: job.task, state: job.state, queue: job.queue, runAt: iso(job.runAt), links };
  const state = job.runAt.getTime() > Date.now() ? ("scheduled" as const) : ("queued" as const);
  return { jobId: job.id, task: job.task, state, queue: job.queueName, runAt: iso(job.runAt), links };
}

export default jobRoutes;
