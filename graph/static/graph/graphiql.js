// GraphiQL for the catalog: the page graph/templates/graph/graphiql.html loads React, ReactDOM,
// GraphiQL and its explorer plugin from static/graphiql/ (globals React, ReactDOM, GraphiQL,
// GraphiQLPluginExplorer), then this file starts it.
(function () {
  "use strict";

  // Queries and mutations are POSTed to this page's own path (/graphql); subscriptions use a
  // WebSocket to the same path with graphql-transport-ws, through the graphql-ws client that
  // GraphiQL.createFetcher (@graphiql/toolkit's createGraphiQLFetcher) carries. The browser sends
  // the session cookie with both, so whoever signed in (admin or the login mutation) is who asks.
  const url = window.location.origin + window.location.pathname;
  const subscriptionUrl = url.replace(/^http/, "ws");

  const EXAMPLE_QUERY = `# The marketplace catalog. Run with Ctrl-Enter or the ▶ button.
#
# Signed in at /admin/? GraphiQL uses that session.
# Or sign in here (the response sets the session cookie):
#   mutation {
#     login(username: "…", password: "…") {
#       ... on Viewer { username }
#     }
#   }
# Or put an API token in the Headers tab, in lower case so
# that subscriptions read it too (GraphiQL sends those
# headers as the WebSocket's connection_init payload):
#   {"authorization": "Bearer <token>"}
#
# Live counters, sent again after every change:
#   subscription {
#     dataLibrary { sections { key counters { key count } } }
#   }

{
  sources {
    id
    country
    status
    deliveryStatus
  }
}
`;

  function cookie(name) {
    for (const pair of document.cookie.split(";")) {
      const [key, ...value] = pair.trim().split("=");
      if (key === name) return decodeURIComponent(value.join("="));
    }
    return null;
  }

  // Read the CSRF cookie at every request, not once when the page loads: signing in (the login
  // mutation here, or the admin in another tab) replaces the token, and a POST with a session
  // but an old token is refused (403 csrf_failed). A token typed in the Headers tab wins.
  function fetchWithCsrfToken(resource, init) {
    const headers = new Headers((init && init.headers) || {});
    const token = cookie("csrftoken");
    if (token !== null && !headers.has("X-CSRFToken")) headers.set("X-CSRFToken", token);
    return window.fetch(resource, Object.assign({}, init, { headers, credentials: "same-origin" }));
  }

  // ?q=...&variables=... open GraphiQL with that operation (?query= would run it instead: the view
  // answers a GET with a query in JSON). The address follows the editors, to share a link.
  const parameters = new URLSearchParams(window.location.search);

  function remember(name, value) {
    if (value) parameters.set(name, value);
    else parameters.delete(name);
    const search = parameters.toString();
    window.history.replaceState(null, "", search ? `?${search}` : window.location.pathname);
  }

  const props = {
    fetcher: GraphiQL.createFetcher({ url, subscriptionUrl, fetch: fetchWithCsrfToken }),
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    defaultQuery: EXAMPLE_QUERY,
    onEditQuery: (query) => remember("q", query),
    onEditVariables: (variables) => remember("variables", variables),
    defaultEditorToolsVisibility: true,
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    // Headers may hold an API token: keep them out of localStorage.
    shouldPersistHeaders: false,
  };
  if (parameters.has("q")) props.query = parameters.get("q");
  if (parameters.has("variables")) props.variables = parameters.get("variables");

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(GraphiQL, props));
})();
