// node validate_openapi.cjs DOC.json: validates an OpenAPI document with
// @apidevtools/swagger-parser (schema and semantic checks, $refs resolved).
// Prints "valid <title> <n paths>" or the error and exits 1.
const SwaggerParser = require("@apidevtools/swagger-parser");
SwaggerParser.validate(process.argv[2]).then(
  (api) => console.log("valid", api.openapi, Object.keys(api.paths).length),
  (err) => { console.error(String(err)); process.exit(1); });
