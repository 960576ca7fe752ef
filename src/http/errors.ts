/** An error whose status code the app's error handler sends as it is (4xx messages are shown to the caller). */
export class HttpError extends Error {
  override name = "HttpError";
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}
