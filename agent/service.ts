// systemd service install (placeholder until the service work lands in this session).
import type { Command } from 'commander';
export function registerServiceCommands(_program: Command): void {}
