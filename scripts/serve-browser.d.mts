import type { Server } from 'node:http';
export function serveBrowserDemo(port?: number): Promise<{ server: Server; url: string }>;
