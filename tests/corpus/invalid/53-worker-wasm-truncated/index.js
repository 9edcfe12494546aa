import add from "./add.wasm";
export default { fetch() { return new Response(String(add)); } };
