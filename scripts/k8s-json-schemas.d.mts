export function schemaFileName(kind: string, group: string, version: string): string;
export function writeOpenApiSchemas(swaggerPath: string, outDir: string): Promise<string[]>;
export function writeCrdSchemas(crdPath: string, outDir: string): Promise<string[]>;
