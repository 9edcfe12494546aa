const name = "a";
const plugin = await import(`./plugins/${name}.js`);
export default { fetch() { return new Response(plugin.default); } };
