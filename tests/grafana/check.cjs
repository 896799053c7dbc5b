// Grafana's own code on the dashboards: every unit id through @grafana/data's value formatters, and each
// panel's transformations run by @grafana/data's transformers on the frames its queries returned.
// stdin: {"units": [id...], "panels": [{"key", "transformations", "frames", "variables"}]}; stdout: JSON.
// Browser globals @grafana/data reads: the locale of date formats, and window (outside a Scenes app, Grafana
// interpolates the dashboard's variables into transformation options itself, through ctx.interpolate).
globalThis.navigator = globalThis.navigator || { language: 'en-US', languages: ['en-US'] };
const data = require('@grafana/data');
globalThis.window = globalThis.window || {}; // set after loading: libraries probe it for a DOM when loaded
const { firstValueFrom } = require('rxjs');

const known = new Set();
for (const category of data.getValueFormats()) {
  for (const unit of category.submenu) known.add(unit.value);
}

function frame(f) {
  return data.createDataFrame({
    refId: f.refId,
    fields: f.fields.map((x) => ({ name: x.name, type: x.type, values: x.values, config: {} })),
  });
}

function interpolator(variables) {
  return (text) => (typeof text === 'string'
    ? text.replace(/\$(\w+)|\$\{(\w+)\}/g, (all, a, b) => (variables[a || b] ?? all)) : text);
}

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const transformers = new Map(Object.values(data.standardTransformers).map((t) => [t.id, t])); // aliases once
  data.standardTransformersRegistry.setInit(() => [...transformers.values()]
    .map((t) => ({ id: t.id, name: t.name, transformation: async () => t }))); // loaded lazily, as in Grafana
  const units = {};
  for (const id of input.units) {
    units[id] = { known: known.has(id), text: data.formattedValueToString(data.getValueFormat(id)(3.2, 1)) };
  }
  const panels = {};
  for (const p of input.panels) {
    const ctx = { interpolate: interpolator(p.variables) };
    const out = await firstValueFrom(data.transformDataFrame(p.transformations, p.frames.map(frame), ctx));
    panels[p.key] = out.map((f) => ({ fields: f.fields.map((x) => ({ name: data.getFieldDisplayName(x, f, out),
                                                                      type: x.type, values: Array.from(x.values) })) }));
  }
  process.stdout.write(JSON.stringify({ units, panels }));
}

main().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
