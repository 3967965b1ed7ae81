// Ordinary compose files, written the way public samples for databases,
// wikis, monitoring stacks and web apps write them, import as written: the
// keys that stopped them before (expose, container_name, secrets, anonymous
// volumes, stop_signal, explicit default drivers, .env values) all convert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importCompose } from '../../cli/compose.js';
import { tempDir } from '../helpers/tmp.js';

const SAMPLES: Record<string, { compose: string; env?: string; check: (got: ReturnType<typeof importCompose>) => void }> = {
  'wordpress with mysql and secrets': {
    compose: `
services:
  db:
    image: mysql:8.0
    container_name: wp-db
    command: '--default-authentication-plugin=mysql_native_password'
    volumes:
      - db_data:/var/lib/mysql
    restart: always
    environment:
      MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db_root_password
      MYSQL_DATABASE: wordpress
      MYSQL_USER: wordpress
      MYSQL_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_root_password, db_password]
    expose: [3306, 33060]
  wordpress:
    depends_on: [db]
    image: wordpress:latest
    ports: ["\${WP_PORT:-8000}:80"]
    restart: always
    environment:
      WORDPRESS_DB_HOST: db:3306
      WORDPRESS_DB_USER: wordpress
      WORDPRESS_DB_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
volumes:
  db_data: {}
secrets:
  db_password:
    file: db_password.txt
  db_root_password:
    file: db_root_password.txt
`,
    env: 'WP_PORT=8080\n',
    check: (got) => {
      assert.equal(got.services.db!.containerName, 'wp-db');
      assert.deepEqual(got.services.db!.command, ['--default-authentication-plugin=mysql_native_password']);
      assert.deepEqual(got.services.wordpress!.ports, [{ target: 80, published: 8080, protocol: 'tcp' }], 'the .env value');
      assert.deepEqual(got.services.wordpress!.secrets, [{ name: 'db_password', target: '/run/secrets/db_password' }]);
    },
  },
  'prometheus, grafana and node-exporter': {
    compose: `
version: '3.8'
networks:
  monitoring:
    driver: bridge
volumes:
  prometheus_data: {}
  grafana_data:
    driver: local
services:
  node-exporter:
    image: prom/node-exporter:latest
    container_name: node-exporter
    restart: unless-stopped
    volumes:
      - /proc:/host/proc:ro
      - /sys:/host/sys:ro
      - /:/rootfs:ro
    command:
      - '--path.procfs=/host/proc'
      - '--path.rootfs=/rootfs'
      - '--path.sysfs=/host/sys'
      - '--collector.filesystem.mount-points-exclude=^/(sys|proc|dev|host|etc)($$|/)'
    pid: host
    expose: [9100]
    networks: [monitoring]
  prometheus:
    image: prom/prometheus:latest
    container_name: prometheus
    restart: unless-stopped
    volumes:
      - ./prometheus.yml:/etc/prometheus/prometheus.yml
      - prometheus_data:/prometheus
    command:
      - '--config.file=/etc/prometheus/prometheus.yml'
      - '--storage.tsdb.path=/prometheus'
      - '--web.enable-lifecycle'
    expose: [9090]
    networks: [monitoring]
  grafana:
    image: grafana/grafana:latest
    container_name: grafana
    restart: unless-stopped
    ports: ["3000:3000"]
    environment:
      - GF_USERS_ALLOW_SIGN_UP=false
    volumes: [grafana_data:/var/lib/grafana]
    depends_on: [prometheus]
    networks: [monitoring]
    logging:
      driver: json-file
      options: {max-size: "10m"}
`,
    check: (got) => {
      assert.equal(got.services['node-exporter']!.pid, 'host');
      assert.ok(got.policyGated.includes('node-exporter: pid host'), 'the bank is told what its policy must allow');
      assert.ok(got.policyGated.includes('node-exporter: bind mount of host path /proc (read-only)'));
      assert.equal(got.services['node-exporter']!.command![3], '--collector.filesystem.mount-points-exclude=^/(sys|proc|dev|host|etc)($|/)');
      assert.deepEqual(got.services.grafana!.dependsOn, { prometheus: { condition: 'service_started' } });
    },
  },
  'nextcloud with redis, anonymous volumes and a stop signal': {
    compose: `
services:
  redis:
    image: redis:alpine
    restart: always
    volumes: ["/data"]
  app:
    image: nextcloud:fpm-alpine
    restart: always
    volumes:
      - nextcloud:/var/www/html:z
    environment:
      - REDIS_HOST=redis
    depends_on: [redis]
    stop_signal: SIGQUIT
    stop_grace_period: 1m
    healthcheck:
      test: ["CMD-SHELL", "pgrep php-fpm || exit 1"]
      interval: 30s
      start_period: 30s
volumes:
  nextcloud:
`,
    check: (got) => {
      assert.deepEqual(got.services.redis!.volumes, [{ type: 'anonymous', source: '', target: '/data', readOnly: false }]);
      assert.equal(got.services.app!.stopSignal, 'SIGQUIT');
      assert.equal(got.services.app!.stopGracePeriodMs, 60_000);
    },
  },
  'a web app with a .env, a worker and resource limits': {
    compose: `
x-app: &app
  image: registry.example.com/shop/app:\${APP_TAG}
  env_file: .env
  restart: unless-stopped
  deploy:
    resources:
      limits: {cpus: '1', memory: 512M}
services:
  web:
    <<: *app
    command: gunicorn shop.wsgi -b 0.0.0.0:8000
    ports: ["127.0.0.1:8000:8000"]
    stdin_open: true
    tty: true
  worker:
    <<: *app
    command: celery -A shop worker
    init: true
    deploy:
      replicas: 3
      resources:
        limits: {cpus: '0.5', memory: 256M}
  db:
    image: postgres:16
    shm_size: 128mb
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/pg
    secrets: [pg]
    ulimits:
      nofile: {soft: 20000, hard: 40000}
secrets:
  pg:
    environment: PG_PASSWORD
`,
    env: 'APP_TAG=2.4.0\nDJANGO_DEBUG=0\n',
    check: (got) => {
      assert.equal(got.services.web!.imageRef, 'registry.example.com/shop/app:2.4.0');
      assert.deepEqual(got.services.web!.environment, { APP_TAG: '2.4.0', DJANGO_DEBUG: '0' });
      assert.equal(got.services.worker!.replicas, 3);
      assert.deepEqual(got.services.worker!.resources, { nanoCpus: 500_000_000, memoryBytes: 256 * 1048576 });
      assert.equal(got.services.db!.shmSizeBytes, 128 * 1048576);
    },
  },
};

for (const [name, s] of Object.entries(SAMPLES)) {
  test(`imports as written: ${name}`, (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'docker-compose.yml'), s.compose);
    if (s.env) writeFileSync(join(dir, '.env'), s.env);
    s.check(importCompose({ file: join(dir, 'docker-compose.yml'), env: {} }));
  });
}
