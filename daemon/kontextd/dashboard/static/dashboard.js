// The dashboard's entry point: start the page named by <body data-page>, wire sign-out.
import { failed, notify, post } from "./common.js";
import * as activity from "./activity.js";
import * as credentials from "./credentials.js";
import * as grants from "./grants.js";
import * as integrations from "./integrations.js";
import * as overview from "./overview.js";
import * as policy from "./policy.js";

const PAGES = { activity, credentials, grants, integrations, overview, policy };

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await post("sign-out", {});
    window.location.assign("/dashboard/");
  } catch (error) {
    notify(`Could not sign out: ${error.message}`, false);
  }
});

const page = PAGES[document.body.dataset.page];
page.start().catch(failed);
