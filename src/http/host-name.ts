// host, IPv4 or [IPv6], with an optional port: nothing that could break a header or a URL.
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Whether `host` is a plain host name (or IP address) with an optional port, safe in a URL. */
export const isHostName = (host: string): boolean => HOST.test(host);
