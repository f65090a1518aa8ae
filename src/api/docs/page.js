"use strict";
// Renders openapi.json (fetched from beside this page) as a list of operations by tag, and the
// schemas they name. Text is set with textContent only: nothing from the document is parsed as
// HTML. No other request is made.
(function () {
  const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
  const main = document.getElementById("main");
  const info = document.getElementById("info");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  // Descriptions use `code` spans; everything else stays text.
  function prose(text, tag) {
    const node = el(tag || "p");
    String(text || "").split("`").forEach((part, i) => {
      node.append(i % 2 ? el("code", {}, part) : document.createTextNode(part));
    });
    return node;
  }

  function refName(ref) {
    return ref.replace("#/components/schemas/", "");
  }

  // A one-line type: a link for a named schema, T[] for arrays, A | B for choices.
  function typeOf(s) {
    if (!s) return el("span", { class: "mute" }, "any");
    if (s.$ref) {
      const name = refName(s.$ref);
      return el("a", { href: "#schema-" + name }, name);
    }
    const parts = s.oneOf || s.anyOf;
    if (parts) {
      const span = el("span");
      parts.forEach((p, i) => {
        if (i) span.append(" | ");
        span.append(typeOf(p));
      });
      return span;
    }
    if (s.allOf && s.allOf.length === 1) return typeOf(s.allOf[0]);
    if (s.enum) return el("code", {}, s.enum.map((v) => JSON.stringify(v)).join(" | "));
    let types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
    const span = el("span");
    if (types.length === 0) {
      span.append(el("span", { class: "mute" }, s.properties ? "object" : "any"));
      return span;
    }
    types.forEach((t, i) => {
      if (i) span.append(" | ");
      if (t === "array") {
        span.append(typeOf(s.items), "[]");
      } else {
        span.append(t + (s.format ? " (" + s.format + ")" : ""));
      }
    });
    return span;
  }

  function propertiesTable(s) {
    const required = new Set(s.required || []);
    const rows = Object.entries(s.properties || {}).map(([name, p]) =>
      el("tr", {},
        el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req" }, " required") : null),
        el("td", {}, typeOf(p)),
        el("td", {}, prose(p.description, "span"))));
    return el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "")), ...rows);
  }

  function schemaBody(s) {
    const box = el("div");
    if (s.description) box.append(prose(s.description));
    if (s.properties) box.append(propertiesTable(s));
    else box.append(el("p", {}, typeOf(s)));
    for (const p of s.oneOf || s.anyOf || []) {
      if (p.properties) {
        const tag = p.properties.type && p.properties.type.enum ? p.properties.type.enum[0] : null;
        box.append(el("h3", {}, tag ? "type: " + tag : "variant"), propertiesTable(p));
      }
    }
    return box;
  }

  function contentTable(content) {
    const rows = Object.entries(content || {}).map(([type, media]) =>
      el("tr", {}, el("td", {}, el("code", {}, type)), el("td", {}, typeOf(media.schema))));
    return rows.length ? el("table", {}, ...rows) : null;
  }

  function operation(doc, method, path, op) {
    const security = op.security || doc.security || [];
    const schemes = security.flatMap((req) => Object.keys(req));
    const lock = schemes.length ? "key: " + schemes.join(" or ") : "no key";
    const body = el("div");
    if (op.description) body.append(prose(op.description));
    const params = op.parameters || [];
    if (params.length) {
      body.append(el("h3", {}, "Parameters"), el("table", {},
        el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "")),
        ...params.map((p) => el("tr", {},
          el("td", {}, el("code", {}, p.name), p.required ? el("span", { class: "req" }, " required") : null),
          el("td", {}, p.in), el("td", {}, typeOf(p.schema)), el("td", {}, prose(p.description, "span"))))));
    }
    if (op.requestBody) {
      body.append(el("h3", {}, "Request body"), contentTable(op.requestBody.content));
    }
    const responses = Object.entries(op.responses || {});
    if (responses.length) {
      body.append(el("h3", {}, "Responses"), el("table", {},
        ...responses.map(([status, r]) => {
          const headers = Object.keys(r.headers || {});
          return el("tr", {},
            el("td", {}, el("code", {}, status)),
            el("td", {}, prose(r.description, "span"),
              headers.length ? el("div", { class: "mute" }, "headers: " + headers.join(", ")) : null,
              contentTable(r.content)));
        })));
    }
    const d = el("details", { "data-text": (method + " " + path + " " + (op.summary || "")).toLowerCase() },
      el("summary", {}, el("span", { class: "m " + method }, method), el("span", { class: "path" }, path),
        prose(op.summary, "span"), el("span", { class: "lock" }, lock)),
      body);
    return d;
  }

  function render(doc) {
    info.textContent = "";
    info.append(el("span", {}, "OpenAPI " + doc.openapi + " · version " + doc.info.version + " · "),
      el("a", { href: "openapi.json" }, "openapi.json"));
    if (doc.info.description) main.append(prose(doc.info.description));
    if (doc.servers && doc.servers.length) {
      main.append(el("p", {}, "Server: ", el("code", {}, doc.servers.map((s) => s.url).join(", "))));
    }
    const filter = el("input", { id: "filter", type: "search", placeholder: "Filter operations (method, path, summary)" });
    main.append(filter);

    const byTag = new Map();
    for (const t of doc.tags || []) byTag.set(t.name, { tag: t, ops: [] });
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const name = (op.tags && op.tags[0]) || "default";
        if (!byTag.has(name)) byTag.set(name, { tag: { name }, ops: [] });
        byTag.get(name).ops.push(operation(doc, method, path, op));
      }
    }
    const sections = [];
    for (const { tag, ops } of byTag.values()) {
      if (!ops.length) continue;
      const section = el("section", {}, el("h2", {}, tag.name), tag.description ? prose(tag.description) : null, ...ops);
      sections.push(section);
      main.append(section);
    }

    const comps = doc.components || {};
    const schemes = Object.entries(comps.securitySchemes || {});
    if (schemes.length) {
      main.append(el("h2", {}, "Security schemes"), el("table", {},
        ...schemes.map(([name, s]) => el("tr", {}, el("td", {}, el("code", {}, name)),
          el("td", {}, s.type + (s.scheme ? " " + s.scheme : "") + (s.in ? " in " + s.in + ": " + s.name : "")),
          el("td", {}, prose(s.description, "span"))))));
    }
    const schemas = Object.entries(comps.schemas || {}).sort(([a], [b]) => a.localeCompare(b));
    if (schemas.length) {
      main.append(el("h2", {}, "Schemas"));
      for (const [name, s] of schemas) {
        main.append(el("details", { id: "schema-" + name }, el("summary", {}, el("code", {}, name)), schemaBody(s)));
      }
    }
    // A link to a schema opens it.
    window.addEventListener("hashchange", openTarget);
    openTarget();

    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const section of sections) {
        let shown = 0;
        for (const d of section.querySelectorAll("details")) {
          const hit = !q || d.getAttribute("data-text").includes(q);
          d.hidden = !hit;
          if (hit) shown += 1;
        }
        section.hidden = shown === 0;
      }
    });
  }

  function openTarget() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView();
    }
  }

  fetch("openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error("openapi.json answered " + r.status);
      return r.json();
    })
    .then(render)
    .catch((e) => {
      info.textContent = "";
      info.append(el("span", { class: "err" }, "Could not load openapi.json: " + e.message));
    });
})();
