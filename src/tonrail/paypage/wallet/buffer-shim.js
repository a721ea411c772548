// @ton/core uses Node's global Buffer: in the browser it is the `buffer` package's.
export { Buffer } from "buffer";
