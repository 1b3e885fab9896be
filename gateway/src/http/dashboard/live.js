// Payrail dashboard: what makes a page live. Written here and served as is (no build step),
// on every page.
//
// Times: every <time datetime> the server drew (the minute in UTC) is said in the reader's
// zone, relative while recent ("3 minutes ago", kept current), the full local timestamp on
// hover.
//
// Updates: the page's <body data-live="..."> names the kinds of change it shows (event,
// delivery_attempt, log_entry). The socket at /dashboard/stream says what changed; the page
// then fetches itself again and swaps its [data-live-region] elements, so what it shows is
// always what its handler draws. Once greeted, and again after every drop (it reconnects
// with backoff), it catches up with what changed while it had no socket.
(function () {
  "use strict";
  var body = document.body;

  var relative = "RelativeTimeFormat" in Intl ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  var dated = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var steps = [
    [60, 1, "second"],
    [3600, 60, "minute"],
    [86400, 3600, "hour"],
  ];
  function say(el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at)) return;
    var ago = (Date.now() - at.getTime()) / 1000;
    var text = dated.format(at);
    if (relative && Math.abs(ago) < 86400) {
      for (var i = 0; i < steps.length; i++) {
        if (Math.abs(ago) < steps[i][0]) {
          text = relative.format(-Math.round(ago / steps[i][1]), steps[i][2]);
          break;
        }
      }
    }
    el.textContent = text;
    el.title = full.format(at);
    el.setAttribute("data-local", "");
  }
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(say);
  }
  localTimes(document);
  setInterval(function () {
    localTimes(document);
  }, 30000);

  var wants = (body.getAttribute("data-live") || "").split(/\s+/).filter(Boolean);
  if (!wants.length || !("WebSocket" in window)) return;
  var status = document.getElementById("live-status");
  var delay = 500;
  var pending = null;
  var updates = 0;

  function show(state, text) {
    body.setAttribute("data-live-state", state);
    if (status) status.textContent = text;
  }

  // A swap replaces the element a keyboard user is on: note what it was (its id, or the link
  // or button it is, by address and name) and put the focus back on its successor.
  function focused() {
    var el = document.activeElement;
    if (!el || el === body || !el.closest("[data-live-region]")) return null;
    return {
      id: el.id,
      tag: el.tagName,
      href: el.getAttribute("href"),
      label: el.getAttribute("aria-label") || el.textContent,
    };
  }
  function refocus(was) {
    if (!was || (document.activeElement && document.activeElement !== body)) return;
    var again = was.id ? document.getElementById(was.id) : null;
    if (!again) {
      var candidates = document.querySelectorAll("[data-live-region] " + was.tag);
      for (var i = 0; i < candidates.length && !again; i++) {
        var c = candidates[i];
        var label = c.getAttribute("aria-label") || c.textContent;
        if (c.getAttribute("href") === was.href && label === was.label) again = c;
      }
    }
    if (again) again.focus();
  }

  // Fetches this page again and swaps its live parts. The fetch also renews an expired
  // session (the handler sets the cookies) and finds an ended one (sign-in page). Its header
  // tells the server this is a refresh, so it leaves a form's one-time message to the page
  // the form sends the browser to (the old page's refresh can race that navigation).
  function reload() {
    return fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html", "Payrail-Live-Refresh": "1" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) {
          location.reload();
          throw new Error("signed out");
        }
        if (!r.ok) throw new Error("status " + r.status);
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var focus = focused();
        document.querySelectorAll("[data-live-region]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next) {
            var swapped = document.importNode(next, true);
            localTimes(swapped);
            el.replaceWith(swapped);
          }
        });
        refocus(focus);
        updates += 1;
        body.setAttribute("data-live-updates", String(updates));
      });
  }

  // Many changes in a burst make one reload, and a page reloads at most once a second: a
  // busy merchant's open overview must not turn into a stream of page renders.
  var last = 0;
  function soon() {
    if (pending) return;
    var wait = Math.max(200, 1000 - (Date.now() - last));
    pending = setTimeout(function () {
      pending = null;
      last = Date.now();
      reload().catch(function () {});
    }, wait);
  }

  function relevant(change) {
    return wants.indexOf(change.kind) >= 0;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/dashboard/stream");
    socket.onmessage = function (m) {
      var message;
      try {
        message = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (message.kind === "hello") {
        delay = 500;
        show("live", "Live");
        // Changes may have gone by since the page was drawn (or, after a drop, since the last
        // socket): the socket only hears what happens from now on, so catch up once.
        soon();
      } else if (message.kind === "resync") {
        soon();
      } else if (message.kind === "changes" && message.changes.some(relevant)) {
        soon();
      }
    };
    socket.onclose = function () {
      show("reconnecting", "Reconnecting…");
      var wait = delay;
      delay = Math.min(delay * 2, 10000);
      setTimeout(function () {
        // Renew the session first if it expired (a socket cannot set cookies from a 401).
        reload().catch(function () {}).then(connect);
      }, wait);
    };
  }

  show("connecting", "Connecting…");
  connect();
})();
