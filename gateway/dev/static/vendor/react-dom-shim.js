// The import map points "react-dom/client" here: react-dom's UMD global as an ES module.
export const { createRoot, hydrateRoot } = globalThis.ReactDOM;
