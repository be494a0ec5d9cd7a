/**
 * /.well-known/security.txt's content (scripts/security_txt.ts): the committed file must not be
 * within 30 days of its Expires, which makes CI fail before it lapses, and the check itself
 * catches each way the file goes wrong.
 */
import { describe, expect, it } from "vitest";
import { EXPIRES_WARNING_DAYS, checkSecurityTxt, renderSecurityTxt, securityTxtConfig } from "../../scripts/security_txt.ts";

const day = 86_400_000;
const config = securityTxtConfig({});

describe("security.txt", () => {
  it(`is valid today and more than ${EXPIRES_WARNING_DAYS} days from its Expires (else: review it, move the date)`, () => {
    expect(checkSecurityTxt(config)).toEqual([]);
  });

  it("fails within 30 days of Expires, once expired, and more than a year ahead", () => {
    const expires = new Date(config.expires).getTime();
    expect(checkSecurityTxt(config, new Date(expires - 31 * day))).toEqual([]);
    expect(checkSecurityTxt(config, new Date(expires - 29 * day)).join()).toMatch(/expires on .*, in 2\d days: confirm the contact/);
    expect(checkSecurityTxt(config, new Date(expires + day)).join()).toMatch(/expired on/);
    expect(checkSecurityTxt(config, new Date(expires - 400 * day)).join()).toMatch(/more than a year ahead/);
  });

  it("refuses a contact or policy that is not a URI it may be, and an Expires that is not RFC 3339 UTC", () => {
    const now = new Date(new Date(config.expires).getTime() - 100 * day);
    expect(checkSecurityTxt({ ...config, contact: ["security@example.com"] }, now).join()).toMatch(/not a mailto:/);
    expect(checkSecurityTxt({ ...config, contact: [] }, now).join()).toMatch(/at least one Contact/);
    expect(checkSecurityTxt({ ...config, policy: "http://example.com/policy" }, now).join()).toMatch(/Policy .* not an https: URL/);
    expect(checkSecurityTxt({ ...config, expires: "2027-06-01" }, now).join()).toMatch(/not an RFC 3339/);
  });

  it("renders RFC 9116's fields, one a line, and takes a deployment's contact and policy from the environment", () => {
    const text = renderSecurityTxt(securityTxtConfig({ GATEHOUSE_SECURITY_CONTACT: "mailto:a@b.example, https://b.example/report", GATEHOUSE_SECURITY_POLICY: "https://b.example/policy" }));
    expect(text).toContain("Contact: mailto:a@b.example\nContact: https://b.example/report\n");
    expect(text).toContain(`Expires: ${config.expires}\n`);
    expect(text).toContain("Policy: https://b.example/policy\n");
    expect(text).toMatch(/\nPreferred-Languages: en\n$/);
    expect(text).not.toContain("\r");
  });
});
