// The import map points "react/jsx-runtime" here: what JSX compiled with the automatic runtime
// calls. createElement keeps `children` from props when no children arguments follow.
const React = globalThis.React;
export const Fragment = React.Fragment;
export function jsx(type, props, key) {
  return React.createElement(type, key === undefined ? props : { ...props, key });
}
export const jsxs = jsx;
