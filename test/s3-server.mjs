/**
 * A real S3-compatible server for the tests (@20minutes/s3rver: checks SigV4 signatures,
 * supports multipart), in its own process so that tests may block on the CLI and may kill the
 * server mid-upload. Usage: node test/s3-server.mjs <directory> [port]; prints {"port": N}.
 * Credentials S3RVER / S3RVER, region us-east-1, path-style; bucket "backups" exists.
 */
import S3rver from '@20minutes/s3rver';

const [directory, port = '0'] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true, configureBuckets: [{ name: 'backups' }] });
const address = await server.run();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
process.on('SIGTERM', () => process.exit(0));
