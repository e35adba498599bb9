import type { Catalog, ToolDefinition } from '../src/pipeline/tool.js';
import type { VendorApi } from '../src/vendor-kit/rest-api.js';
import type { VendorSpec } from '../src/pipeline/vendor-spec.js';
import { getApproval } from './leash/get-approval.js';
import { getBudget } from './leash/get-budget.js';
import { resendVendor } from './resend/client.js';
import { resendApi } from './resend/http.js';
import { sendEmail } from './resend/send-email.js';
import { stripeVendor } from './stripe/client.js';
import { getPayment } from './stripe/get-payment.js';
import { stripeApi } from './stripe/http.js';
import { issueRefund } from './stripe/issue-refund.js';
import { twilioVendor } from './twilio/client.js';
import { twilioApi } from './twilio/http.js';
import { sendSms } from './twilio/send-sms.js';

/** The one list of governed tools. Adding a vendor = adding a folder and a line here. */
const TOOLS: ToolDefinition[] = [issueRefund, getPayment, sendSms, sendEmail, getBudget, getApproval];
const VENDORS: VendorSpec[] = [stripeVendor, twilioVendor, resendVendor];

/** The vendors' declarations the composition root hands to `loadConfig` (env vars, secret shapes, prices). */
export const catalogVendors: readonly VendorSpec[] = VENDORS;

/** The vendors' own REST APIs that `leash serve` also answers (the REST front door). */
export const vendorApis: readonly VendorApi[] = [stripeApi, twilioApi, resendApi];

export const catalog: Catalog = {
  tools: new Map(TOOLS.map((t) => [t.name, t])),
  vendors: new Map(VENDORS.map((v) => [v.name, v])),
  endpoints: new Map(vendorApis.flatMap((api) => api.endpoints.map((e) => [e.name, e]))),
};
