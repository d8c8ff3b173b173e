import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Peers (PostgreSQL, MinIO) are started once per run here and shared by every test file.
    globalSetup: ['test/peers/global-setup.ts'],
    testTimeout: 60_000,
    // Polls wait for real work (a recording finalising through S3) on a shared 2-core machine: give them room.
    expect: { poll: { timeout: 15_000, interval: 20 } },
    hookTimeout: 600_000,
    pool: 'forks',
    // Two cores: more parallel files only adds contention with the peers.
    maxWorkers: 2,
  },
});
