import type { Executor } from './executor.js';
import type { Organisation } from './types.js';

interface OrganisationRow {
  id: string;
  name: string;
  created_at: Date;
}

function toOrganisation(row: OrganisationRow): Organisation {
  return { id: row.id, name: row.name, createdAt: row.created_at };
}

export interface OrganisationsRepository {
  /** Creates the organisation if missing (name defaults to the id); a given name replaces the stored one. */
  ensure(id: string, name?: string): Promise<Organisation>;
  get(id: string): Promise<Organisation | null>;
  /** The organisation's retention period in days; null: kept forever (also for an unknown organisation). */
  retentionDays(id: string): Promise<number | null>;
  /** Sets (or, with null, clears) the retention period, creating the organisation's row if missing. */
  setRetentionDays(id: string, days: number | null): Promise<number | null>;
}

export function createOrganisationsRepository(db: Executor): OrganisationsRepository {
  return {
    async ensure(id, name) {
      const { rows } = await db.query<OrganisationRow>(
        'organisations.ensure',
        `INSERT INTO organisations (id, name) VALUES ($1, COALESCE($2, $1))
         ON CONFLICT (id) DO UPDATE SET name = COALESCE($2, organisations.name)
         RETURNING id, name, created_at`,
        [id, name ?? null],
      );
      return toOrganisation(rows[0]!);
    },

    async get(id) {
      const { rows } = await db.query<OrganisationRow>(
        'organisations.get',
        'SELECT id, name, created_at FROM organisations WHERE id = $1',
        [id],
      );
      return rows[0] ? toOrganisation(rows[0]) : null;
    },

    async retentionDays(id) {
      const { rows } = await db.query<{ retention_days: number | null }>(
        'organisations.retentionDays',
        'SELECT retention_days FROM organisations WHERE id = $1',
        [id],
      );
      return rows[0]?.retention_days ?? null;
    },

    async setRetentionDays(id, days) {
      const { rows } = await db.query<{ retention_days: number | null }>(
        'organisations.setRetentionDays',
        `INSERT INTO organisations (id, name, retention_days) VALUES ($1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET retention_days = $2
         RETURNING retention_days`,
        [id, days],
      );
      return rows[0]!.retention_days;
    },
  };
}
