/**
 * The direction of dependencies in src/ (docs/architecture.md draws it). `npm run lint:deps` checks it
 * before every test run, so CI fails on a dependency that points the wrong way.
 *
 *   bootstrap (main.ts, bootstrap/)  wires everything
 *     └─ edges: api/, ingest/, twilio-rest/   — never each other; the core only through gateway/port.ts
 *          └─ core: gateway/                  — never back up to an edge or to bootstrap
 *               └─ libraries: pipeline/, crypto/, storage/, db/, audio/, http/, twilio-client/, …
 */
const EDGES = '^src/(api|ingest|twilio-rest)/';
const LIBRARIES = '^src/(pipeline|crypto|storage|db|audio|errors|log|metrics|config|server|http|twilio-client|transcription)/';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle makes two modules one; split the shared part out instead.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-not-to-edges',
      severity: 'error',
      comment: 'The core (gateway/) knows nothing of the routes, the ingest protocols or bootstrap: they are mounted on it.',
      from: { path: '^src/gateway/' },
      to: { path: '^src/(api|ingest|twilio-rest|bootstrap|http|twilio-client)/|^src/main\\.ts$' },
    },
    {
      name: 'edges-through-the-port',
      severity: 'error',
      comment: 'api, ingest and twilio-rest use the core only through its narrow interface, gateway/port.ts.',
      from: { path: EDGES },
      to: { path: '^src/gateway/', pathNot: '^src/gateway/port\\.ts$' },
    },
    {
      name: 'api-not-to-other-edges',
      severity: 'error',
      comment: 'The API gets the Twilio side injected (TwilioImports), never by importing twilio-rest.',
      from: { path: '^src/api/' },
      to: { path: '^src/(ingest|twilio-rest)/' },
    },
    {
      name: 'ingest-not-to-other-edges',
      severity: 'error',
      from: { path: '^src/ingest/' },
      to: { path: '^src/(api|twilio-rest)/' },
    },
    {
      name: 'twilio-rest-not-to-other-edges',
      severity: 'error',
      from: { path: '^src/twilio-rest/' },
      to: { path: '^src/(api|ingest)/' },
    },
    {
      name: 'edges-not-to-storage',
      severity: 'error',
      comment: 'Spool files, S3 objects and uploads belong to the core (gateway/recording-objects.ts serves them).',
      from: { path: EDGES },
      to: { path: '^src/storage/' },
    },
    {
      name: 'edges-use-db-and-pipeline-types-only',
      severity: 'error',
      comment: 'Rows and frames are the vocabulary; the repositories come through GatewayPort.db and the DSP runs in the core.',
      from: { path: EDGES, pathNot: '^src/ingest/twilio/simulator\\.ts$' },
      to: { path: '^src/(db|pipeline)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'libraries-not-up',
      severity: 'error',
      comment: 'Libraries are leaves: they never import the core, an edge or bootstrap.',
      from: { path: LIBRARIES },
      to: { path: '^src/(gateway|api|ingest|twilio-rest|bootstrap)/|^src/main\\.ts$' },
    },
    {
      name: 'only-entry-points-import-bootstrap',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(bootstrap/|main\\.ts$)' },
      to: { path: '^src/bootstrap/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count (and are labelled), so a rule can allow them where they are only vocabulary.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
  },
};
