// Entry point of the guide's bundle (tests/browser/vendor.mjs compiles it to guide.js).
export { DashboardEmbed } from "./DashboardEmbed.jsx";
export { DashboardTokenManager } from "./DashboardTokenManager.js";
