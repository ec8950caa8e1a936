// PM2 (the integration guide's recommended way to run the processor):
//
//   pm2 start deploy/pm2/ecosystem.config.js     # start
//   pm2 logs herald-processor                    # logs
//   pm2 stop herald-processor                    # stop (SIGTERM, then waits)
//
// Herald reads the POS's own backend/.env (set `cwd` to that directory);
// HERALD_HOST / HERALD_PORT keep `herald serve` off the POS's HOST / PORT.
module.exports = {
  apps: [
    {
      name: "herald-processor",
      script: "herald",            // on the PATH (cargo install --path .), or an absolute path
      args: "process --watch",
      interpreter: "none",         // a native binary, not a Node script
      cwd: "./backend",            // where the POS's .env is
      exec_mode: "fork",
      instances: 1,                // PostgreSQL/MySQL: more workers are safe; SQLite: keep 1
      autorestart: true,
      watch: false,                // never restart on file changes: it would cut sends off mid-flight
      // On stop, Herald finishes the sends in flight (each at most
      // PROVIDER_TIMEOUT_SECONDS, default 30 s) and hands the rest back.
      // PM2's default (1.6 s) would kill it mid-send: give it longer.
      kill_timeout: 40000,
      env: {
        LOG_FORMAT: "json",
      },
    },
  ],
};
