// A test host for the todos view: the official MCP Apps AppBridge (host side), with the view in a
// sandboxed srcdoc iframe, as ChatGPT and Claude render it. tools/call from the view goes to
// window.forwardToolCall, which the test provides and forwards to the real /mcp.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

window.host = { calls: [], initialized: false, error: null };

window.startHost = async (html, toolInput, toolResult, theme) => {
  const iframe = document.createElement("iframe");
  iframe.id = "view";
  iframe.setAttribute("sandbox", "allow-scripts"); // an opaque origin: no access to this page
  iframe.style.cssText = "width: 560px; height: 420px; border: 1px solid #ccc";
  document.body.appendChild(iframe);
  const bridge = new AppBridge(
    null,
    { name: "connected-todos-test-host", version: "1.0.0" },
    { serverTools: {} },
    { hostContext: { theme, displayMode: "inline", platform: "web", styles: { variables: {} } } },
  );
  bridge.oncalltool = async (params) => {
    window.host.calls.push(params);
    return window.forwardToolCall(params);
  };
  const initialized = new Promise((resolve) => bridge.addEventListener("initialized", resolve));
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = html; // after connect: the view's ui/initialize must find the bridge listening
  await initialized;
  window.host.initialized = true;
  await bridge.sendToolInput({ arguments: toolInput });
  await bridge.sendToolResult(toolResult);
  window.host.bridge = bridge;
};
