/**
 * Turns the Kubernetes API's OpenAPI definitions (the `api/openapi-spec/swagger.json` that the k8s.io/kubernetes Go
 * module ships) and CustomResourceDefinitions (as JSON) into one standalone JSON schema per kind, laid out as
 * kubeconform reads them: `<dir>/<kind>-<group>-<version>.json` (`statefulset-apps-v1.json`, `service-v1.json`,
 * `servicemonitor-monitoring-v1.json`), to be named with
 * `-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`. Offline: kubeconform's default schema source
 * is a web site this build environment cannot reach.
 *
 * The conversion is the one kubeconform's own `openapi2jsonschema.py` makes, in strict form:
 * - every object schema with `properties` and no `additionalProperties` gets `additionalProperties: false`, so an
 *   unknown or misspelt field is an error (as `kubectl --validate=strict` and the API server's field validation);
 * - `int-or-string` becomes `oneOf: [string, integer]` and a resource `Quantity` `oneOf: [string, number]`, the
 *   two JSON forms the API server takes;
 * - each kind's file holds only the definitions it references (`definitions` + `$ref`), so recursive types work.
 * A field set to `null` is refused (the API server would treat it as absent): stricter than the server, on purpose.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const INT_OR_STRING = 'io.k8s.apimachinery.pkg.util.intstr.IntOrString';
const QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity';

/** kubeconform's file name for a kind: lower-case kind, then `-<first label of the group>-<version>` or `-<version>`. */
export function schemaFileName(kind, group, version) {
  const suffix = group ? `-${group.split('.')[0].toLowerCase()}-${version.toLowerCase()}` : `-${version.toLowerCase()}`;
  return `${kind.toLowerCase()}${suffix}.json`;
}

function strict(node) {
  if (Array.isArray(node)) return node.map(strict);
  if (!node || typeof node !== 'object') return node;
  if (node.format === 'int-or-string') {
    const { description } = node;
    return { ...(description ? { description } : {}), oneOf: [{ type: 'string' }, { type: 'integer' }] };
  }
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    // Property names are data, not schema keywords: a property called `format` must not be rewritten.
    if (key === 'properties' || key === 'definitions' || key === 'patternProperties') {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, schema]) => [name, strict(schema)]));
    } else {
      out[key] = strict(value);
    }
  }
  const preservesUnknown = node['x-kubernetes-preserve-unknown-fields'] === true;
  if (out.properties && out.additionalProperties === undefined && !preservesUnknown) out.additionalProperties = false;
  return out;
}

function refsOf(node, into) {
  if (Array.isArray(node)) {
    for (const item of node) refsOf(item, into);
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith('#/definitions/')) into.add(value.slice('#/definitions/'.length));
      else refsOf(value, into);
    }
  }
  return into;
}

function closure(definitions, root) {
  const seen = new Set();
  const queue = [root];
  while (queue.length > 0) {
    const name = queue.pop();
    if (seen.has(name)) continue;
    const definition = definitions[name];
    if (!definition) throw new Error(`the OpenAPI definitions reference ${name}, which they do not define`);
    seen.add(name);
    for (const ref of refsOf(definition, new Set())) if (!seen.has(ref)) queue.push(ref);
  }
  return seen;
}

/** Writes one schema file per kind of the swagger document; returns the file names written. */
export async function writeOpenApiSchemas(swaggerPath, outDir) {
  const swagger = JSON.parse(await readFile(swaggerPath, 'utf8'));
  const definitions = { ...swagger.definitions };
  if (!definitions[INT_OR_STRING] || !definitions[QUANTITY]) throw new Error(`${swaggerPath} lacks ${INT_OR_STRING} or ${QUANTITY}`);
  definitions[QUANTITY] = { description: 'A resource quantity: a string such as "500m" or "1Gi", or a number.', oneOf: [{ type: 'string' }, { type: 'number' }] };
  const strictDefinitions = strict(definitions);
  await mkdir(outDir, { recursive: true });
  const written = [];
  for (const [name, definition] of Object.entries(swagger.definitions)) {
    for (const gvk of definition['x-kubernetes-group-version-kind'] ?? []) {
      // Only kinds one writes as a manifest: objects with apiVersion and kind (not the List wrappers' items).
      if (!definition.properties?.apiVersion || !definition.properties?.kind) continue;
      const needed = closure(strictDefinitions, name);
      const schema = {
        $schema: 'http://json-schema.org/draft-04/schema#',
        $ref: `#/definitions/${name}`,
        definitions: Object.fromEntries([...needed].sort().map((n) => [n, strictDefinitions[n]])),
      };
      const file = schemaFileName(gvk.kind, gvk.group, gvk.version);
      await writeFile(join(outDir, file), JSON.stringify(schema));
      written.push(file);
    }
  }
  return written;
}

/** Writes one schema file per served version of a CustomResourceDefinition given as JSON. */
export async function writeCrdSchemas(crdPath, outDir) {
  const crd = JSON.parse(await readFile(crdPath, 'utf8'));
  if (crd.kind !== 'CustomResourceDefinition') throw new Error(`${crdPath} is not a CustomResourceDefinition`);
  await mkdir(outDir, { recursive: true });
  const written = [];
  for (const version of crd.spec.versions) {
    const openApi = version.schema?.openAPIV3Schema;
    if (!version.served || !openApi) continue;
    const schema = { $schema: 'http://json-schema.org/draft-04/schema#', ...strict(openApi) };
    const file = schemaFileName(crd.spec.names.kind, crd.spec.group, version.name);
    await writeFile(join(outDir, file), JSON.stringify(schema));
    written.push(file);
  }
  return written;
}
