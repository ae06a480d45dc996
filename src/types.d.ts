/** What esbuild's loaders make of a .wasm import: bytes in the browser bundle, base64 text in the Node bundles (build.mjs). */
declare module '*.wasm' {
  const embedded: Uint8Array | string;
  export default embedded;
}
