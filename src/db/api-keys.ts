import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CallvaultError, ErrorCode, isCallvaultError } from '../errors/index.js';
import { USER_ID } from '../config/index.js';
import { isUuid, type Executor } from './executor.js';
import { API_KEY_SCOPES, type ApiKeyInfo, type ApiKeyScope, type CreateApiKeyOptions, type CreatedApiKey, type VerifiedApiKey } from './types.js';

/**
 * Two kinds of key verify through one path: `prefixOf(key)` picks the row, the SHA-256 of the whole key
 * is compared in constant time.
 *  - Generated keys are `cvk_<12 hex prefix>_<secret>`: the prefix travels in the token, so operators can
 *    tell keys apart in `list()` output and logs without seeing secrets.
 *  - Bootstrap keys from configuration are any string of 16+ characters; their prefix is derived as the
 *    first 12 hex characters of SHA-256(key).
 */
const GENERATED_KEY = /^cvk_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}$/;
const MIN_BOOTSTRAP_KEY_LENGTH = 16;
// Longer strings are not keys; refusing them early avoids hashing arbitrary request payloads.
const MAX_KEY_LENGTH = 512;
const PREFIX_ATTEMPTS = 3;

function sha256(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

export function prefixOf(key: string): string {
  const generated = GENERATED_KEY.exec(key);
  return generated ? generated[1]! : sha256(key).toString('hex').slice(0, 12);
}

// Compared against when no row matches, so a miss costs the same hashing and comparison as a hit.
const NO_MATCH_HASH = Buffer.alloc(32);

interface ApiKeyRow {
  id: string;
  org_id: string;
  prefix: string;
  label: string | null;
  scopes: string[];
  user_id: string | null;
  created_at: Date;
  revoked_at: Date | null;
}

const INFO_COLUMNS = 'id, org_id, prefix, label, scopes, user_id, created_at, revoked_at';

/** Scopes as stored, in the canonical order; anything unknown in a row grants nothing. */
function scopesOf(stored: readonly string[]): ApiKeyScope[] {
  return API_KEY_SCOPES.filter((s) => stored.includes(s));
}



function toInfo(row: ApiKeyRow): ApiKeyInfo {
  return {
    id: row.id,
    orgId: row.org_id,
    prefix: row.prefix,
    label: row.label,
    scopes: scopesOf(row.scopes),
    userId: row.user_id,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

export interface ApiKeysRepository {
  /** A new key; `options` is a label (the old signature) or label, scopes (default all) and user. */
  create(orgId: string, options?: string | CreateApiKeyOptions): Promise<CreatedApiKey>;
  /**
   * Registers a key from configuration (creating its organisation if needed). Idempotent; a key revoked
   * through the API stays revoked across restarts. Throws CONFLICT if the same key is configured for
   * another organisation.
   */
  ensureBootstrap(orgId: string, key: string): Promise<ApiKeyInfo>;
  /** The owner of an active key, or null for unknown, malformed or revoked keys. */
  verify(key: string): Promise<VerifiedApiKey | null>;
  list(orgId: string): Promise<ApiKeyInfo[]>;
  /** True if an active key of this organisation was revoked by this call. */
  revoke(orgId: string, id: string): Promise<boolean>;
}

export function createApiKeysRepository(db: Executor): ApiKeysRepository {
  return {
    async create(orgId, options) {
      const opts: CreateApiKeyOptions = typeof options === 'string' ? { label: options } : (options ?? {});
      const scopes = opts.scopes === undefined ? [...API_KEY_SCOPES] : scopesOf(opts.scopes);
      if (opts.scopes !== undefined && (scopes.length === 0 || opts.scopes.some((s) => !API_KEY_SCOPES.includes(s)))) {
        throw new CallvaultError(ErrorCode.BadRequest, 'scopes are read, control, delete and admin (at least one)', { details: { allowed: API_KEY_SCOPES } });
      }
      if (opts.userId !== undefined && !USER_ID.test(opts.userId)) {
        throw new CallvaultError(ErrorCode.BadRequest, 'a user id is 1 to 200 letters, digits or ._:@|-');
      }
      // 48 random prefix bits make a collision (also with bootstrap prefixes) very unlikely; retrying covers it.
      for (let attempt = 1; ; attempt++) {
        const prefix = randomBytes(6).toString('hex');
        const key = `cvk_${prefix}_${randomBytes(32).toString('base64url')}`;
        try {
          const { rows } = await db.query<{ id: string }>(
            'apiKeys.create',
            'INSERT INTO api_keys (org_id, prefix, hash, label, scopes, user_id) VALUES ($1, $2, $3, $4, $5::text[], $6) RETURNING id',
            [orgId, prefix, sha256(key), opts.label ?? null, scopes, opts.userId ?? null],
          );
          return { id: rows[0]!.id, key, prefix };
        } catch (err) {
          const prefixTaken =
            isCallvaultError(err, ErrorCode.Conflict) && err.details?.['constraint'] === 'api_keys_prefix_key';
          if (!prefixTaken || attempt >= PREFIX_ATTEMPTS) throw err;
        }
      }
    },

    async ensureBootstrap(orgId, key) {
      if (key.length < MIN_BOOTSTRAP_KEY_LENGTH || key.length > MAX_KEY_LENGTH) {
        throw new CallvaultError(
          ErrorCode.ConfigInvalid,
          `bootstrap API keys are ${MIN_BOOTSTRAP_KEY_LENGTH} to ${MAX_KEY_LENGTH} characters`,
          { details: { orgId } },
        );
      }
      const prefix = prefixOf(key);
      const hash = sha256(key);
      await db.query(
        'apiKeys.ensureBootstrap',
        'INSERT INTO organisations (id, name) VALUES ($1, $1) ON CONFLICT (id) DO NOTHING',
        [orgId],
      );
      await db.query(
        'apiKeys.ensureBootstrap',
        `INSERT INTO api_keys (org_id, prefix, hash, label) VALUES ($1, $2, $3, 'bootstrap')
         ON CONFLICT (prefix) DO NOTHING`,
        [orgId, prefix, hash],
      );
      const { rows } = await db.query<ApiKeyRow & { hash: Buffer }>(
        'apiKeys.ensureBootstrap',
        `SELECT ${INFO_COLUMNS}, hash FROM api_keys WHERE prefix = $1`,
        [prefix],
      );
      const row = rows[0];
      if (!row || row.org_id !== orgId || !timingSafeEqual(row.hash, hash)) {
        throw new CallvaultError(ErrorCode.Conflict, 'bootstrap API key clashes with a key of another organisation', {
          details: { orgId, prefix },
        });
      }
      return toInfo(row);
    },

    async verify(key) {
      if (key.length === 0 || key.length > MAX_KEY_LENGTH) return null;
      const presented = sha256(key);
      const { rows } = await db.query<{ id: string; org_id: string; hash: Buffer; scopes: string[]; user_id: string | null }>(
        'apiKeys.verify',
        'SELECT id, org_id, hash, scopes, user_id FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL',
        [prefixOf(key)],
      );
      const row = rows[0];
      const stored = row && row.hash.length === presented.length ? row.hash : NO_MATCH_HASH;
      const equal = timingSafeEqual(stored, presented);
      return row && equal ? { orgId: row.org_id, keyId: row.id, scopes: scopesOf(row.scopes), userId: row.user_id } : null;
    },

    async list(orgId) {
      const { rows } = await db.query<ApiKeyRow>(
        'apiKeys.list',
        `SELECT ${INFO_COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at, id`,
        [orgId],
      );
      return rows.map(toInfo);
    },

    async revoke(orgId, id) {
      if (!isUuid(id)) return false;
      const { rowCount } = await db.query(
        'apiKeys.revoke',
        'UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL',
        [orgId, id],
      );
      return (rowCount ?? 0) > 0;
    },
  };
}
