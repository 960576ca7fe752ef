/** The registry as the API shows it: each task's payload schema, defaults and schedules. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import { describeSchedules } from "../../cron/schedules.ts";
import type { AppDependencies } from "../dependencies.ts";
import { findPauses } from "../../db/repositories/pauses.ts";
import { pauseHolding } from "../../lifecycle/pauses.ts";
import { AUTHENTICATED_ERRORS, errorResponses, NoQuery, PauseSchema } from "../schemas.ts";
import { pauseJson } from "./pauses.ts";

const Task = Type.Object({
  name: Type.String(),
  description: Type.String(),
  internal: Type.Boolean({ description: "Runs from the crontab only; cannot be triggered over HTTP." }),
  payloadSchema: Type.Unknown({ description: "JSON Schema of the payload (the one POST /jobs/{task} validates against)." }),
  defaults: Type.Object({
    maxAttempts: Type.Integer(),
    queueName: Type.Union([Type.String(), Type.Null()]),
    priority: Type.Integer(),
    jobKeyMode: Type.String(),
    timeoutMs: Type.Integer(),
    concurrency: Type.Union([
      Type.Object({
        limit: Type.Integer(),
        group: Type.String(),
        scope: Type.Union([Type.Literal("global"), Type.Literal("instance")], { description: "global: the limit holds across every instance; instance: in each one" }),
      }),
      Type.Null(),
    ]),
  }),
  paused: Type.Union([PauseSchema, Type.Null()], {
    description: "The pause holding the task's jobs back (the task's own, its cap group's, or its default queue's; PUT /pauses/...), or null",
  }),
  schedules: Type.Array(
    Type.Object({
      id: Type.String(),
      expression: Type.String({ description: "Crontab time fields, UTC" }),
      backfillSeconds: Type.Integer(),
      payload: Type.Unknown(),
      nextRunAt: Type.String({ format: "date-time" }),
      lastRunAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
      lastSuccessAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
      maxStalenessSeconds: Type.Union([Type.Integer(), Type.Null()], { description: "From stale= on the crontab line" }),
      overdue: Type.Boolean({ description: "The last success is older than maxStalenessSeconds (never while the task is paused)" }),
      paused: Type.Boolean({ description: "The entry's job is paused: it is not reported overdue meanwhile" }),
    }),
  ),
});

const taskRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  app.get(
    "/tasks",
    {
      schema: {
        operationId: "listTasks",
        summary: "The tasks this service runs, with their payload schemas, defaults and schedules",
        tags: ["tasks"],
        querystring: NoQuery,
        response: { 200: Type.Object({ tasks: Type.Array(Task) }), ...errorResponses(...AUTHENTICATED_ERRORS) },
      },
    },
    async () => {
      const schedules = describeSchedules(deps.crontab);
      const [statuses, pauses] = await Promise.all([deps.cronFreshness.read(), findPauses(deps.db)]);
      const freshness = new Map(statuses.map((status) => [status.id, status]));
      return {
        tasks: deps.registry.all().map((task) => ({
          name: task.name,
          description: task.description,
          internal: task.internal,
          payloadSchema: task.schema,
          defaults: {
            maxAttempts: task.defaults.maxAttempts,
            queueName: task.defaults.queueName,
            priority: task.defaults.priority,
            jobKeyMode: task.defaults.jobKeyMode,
            timeoutMs: task.defaults.timeoutMs,
            concurrency: task.defaults.concurrency,
          },
          paused: pauseJson(pauseHolding(pauses, task, task.defaults.queueName)),
          schedules: schedules
            .filter((schedule) => schedule.task === task.name)
            .map(({ task: _task, nextRunAt, ...schedule }) => {
              const status = freshness.get(schedule.id);
              return {
                ...schedule,
                nextRunAt: nextRunAt.toISOString(),
                lastRunAt: status?.lastRunAt?.toISOString() ?? null,
                lastSuccessAt: status?.lastSuccessAt?.toISOString() ?? null,
                maxStalenessSeconds: status?.maxStalenessSeconds ?? null,
                overdue: status?.overdue ?? false,
                paused: status?.paused ?? false,
              };
            }),
        })),
      };
    },
  );
};

export default taskRoutes;
