// Validates a CycloneDX 1.5 JSON document (standard input) against the official JSON schema
// shipped by @cyclonedx/cyclonedx-library (tests/fixtures/node_modules), with Ajv.
// Exit status 0: valid; 1: invalid, the errors on standard output.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const require = createRequire(join(resolve(process.argv[2]), "package.json"));
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;
const lib = dirname(require.resolve("@cyclonedx/cyclonedx-library/package.json"));
const schemaDir = join(lib, "res", "schema");
const load = (name) => JSON.parse(readFileSync(join(schemaDir, name), "utf8"));

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true, logger: false });
addFormats(ajv);
// bom-1.5 refers to its companions by their file names, relative to its own $id.
for (const name of ["spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"]) {
  const schema = load(name);
  schema.$id = `http://cyclonedx.org/schema/${name}`;
  ajv.addSchema(schema);
}
const validate = ajv.compile(load("bom-1.5.SNAPSHOT.schema.json"));
const doc = JSON.parse(readFileSync(0, "utf8"));
if (validate(doc)) {
  console.log("valid");
} else {
  console.log(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
