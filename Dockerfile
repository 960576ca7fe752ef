# syntax=docker/dockerfile:1
# One image for the service (the default command) and the ops CLI:
#   docker run IMAGE                                         the service: HTTP, runner, crontab
#   docker run IMAGE node bin/observing-jobs.js migrate      the pre-deploy migration (Cloud Run Job)
#   docker run IMAGE node bin/observing-jobs.js add TASK --payload JSON
# Build: docker build -t observing-jobs .   (the context is the repository root; see .dockerignore)

# Pinned to a patch release so a rebuild is the same Node; bump it deliberately (CI may add @sha256:).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies are embedded-postgres's platform binaries (development only) and pg-cloudflare.
# npm's download cache lives in a build cache mount, never in a layer.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY tasks ./tasks
# The build's last step: single-file copies of typebox and kysely in dist/node_modules/ (start-up time).
COPY scripts/bundle-dependencies.ts ./scripts/
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. The embedded PostgreSQL never runs here (production requires
# DATABASE_URL), so its 60 MB of binaries stay out with the other optional packages.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY crontab ./
# Files stay root-owned and read-only to the service: the image's `node` user (uid 1000) runs it.
USER node
EXPOSE 8080
# Exec form, node itself as PID 1: Cloud Run's SIGTERM reaches the service's graceful shutdown.
# --max-semi-space-size=4 (MB, each of V8's two semi-spaces: a young generation of 8 MB): V8
# grows its young generation to 32 MB under load and keeps it; capped, an instance that has just
# drained a backlog holds ~100 MB less, at no measured cost to the drain rate.
# --min-semi-space-size=4: the collection once ready (src/startup-memory.ts) would otherwise leave
# each semi-space at V8's minimum (1 MB), filling (so scavenged) about four times as often, which
# put ~1 ms on the trigger-to-start p99; with the floor each keeps 4 MB, resident only as it is
# used, so idle RSS is the same (docs/BENCHMARKS.md, "Footprint"). The
# benchmark reads the flags from this line (bench/lib/image-command.ts), and `npm start` uses the
# same ones.
CMD ["node", "--min-semi-space-size=4", "--max-semi-space-size=4", "--enable-source-maps", "--import", "./dist/src/observability/instrumentation.js", "dist/src/main.js"]
