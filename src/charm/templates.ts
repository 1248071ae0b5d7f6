/** Handlebars templates shipped in the charm (templates/, tf-cmd-scripts/), compiled once each. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Handlebars from 'handlebars';

export class TemplateRenderer {
  private readonly cache = new Map<string, Handlebars.TemplateDelegate>();
  constructor(private readonly charmDir: string) {}

  render(relativePath: string, data: object): string {
    let template = this.cache.get(relativePath);
    if (!template) {
      const source = fs.readFileSync(path.join(this.charmDir, relativePath), 'utf8');
      template = Handlebars.compile(source, { noEscape: true, strict: true });
      this.cache.set(relativePath, template);
    }
    return template(data);
  }
}
