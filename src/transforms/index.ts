/**
 * What a backup passes through: the transforms (gzip, age), one file each, listed in
 * registry.ts; pipeline.ts runs them over files, writers and stores. This is what the rest of
 * blufio imports.
 */
export { checkKeysFor, compressed, encrypted, firstBytes, layersFor, layersOfFile, layersOfName, PLAIN, recipientsOf, suffixOf, TRANSFORMS, type Chunks, type KeyOptions, type Layers, type Transform } from './registry.ts';
export { packedBody, packedChunks, packerAhead, packFile, packing, plainPrefix, streamWriter, unpackFile, writeChunks, type ChunkWriter } from './pipeline.ts';
export { sqliteSizeGuard, type Guard } from './guard.ts';
