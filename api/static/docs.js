// Swagger UI for /docs, started from a file because the Content-Security-Policy allows no inline script.
"use strict";
window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
