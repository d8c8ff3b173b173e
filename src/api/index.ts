import type { TemplatedApp } from 'uWebSockets.js';
import type { Gateway } from '../gateway/gateway.js';
import { createRouter, json } from './http.js';

/** Registers every HTTP route of the gateway on the uWS app. */
export function registerApi(app: TemplatedApp, gateway: Gateway): void {
  const router = createRouter(app, { logger: gateway.options.logger, metrics: gateway.metrics });

  router.route('get', '/healthz', 'healthz', () => json(200, { status: 'ok' }));

  router.route('get', '/readyz', 'readyz', async () => {
    const checks: Record<string, boolean> = {
      accepting: gateway.acceptingStreams,
      workers: gateway.services.pool.ready,
      database: false,
      storage: false,
    };
    if (checks['accepting']) {
      [checks['database'], checks['storage']] = await Promise.all([
        gateway.db.ping().then(
          () => true,
          () => false,
        ),
        gateway.storageReachable(),
      ]);
    }
    const ready = Object.values(checks).every(Boolean);
    return json(ready ? 200 : 503, { status: ready ? 'ready' : 'unready', checks });
  });

  router.route('get', '/metrics', 'metrics', async () => {
    const { contentType, body } = await gateway.metrics.render();
    return { status: 200, headers: { 'content-type': contentType }, body };
  });
}
