using ProxySelection.Engine.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

namespace ProxySelection.Host.Control;

/// <summary>What a control client may ask.</summary>
internal enum ControlCommand
{
    Status,
    CacheShow,
    CacheFlush,
    Reload,
}

/// <summary>
/// The control socket's protocol: JSON lines, one request per line (<c>{"command":"status"}</c>; commands
/// <c>status</c>, <c>cache-show</c>, <c>cache-flush</c>, <c>reload</c>), one response per line:
/// <c>{"ok":true,...}</c> or <c>{"ok":false,"error":"..."}</c>. Bad input gets an error reply, never an exception.
/// </summary>
internal static class ControlProtocol
{
    /// <summary>Longest request line accepted, newline excluded; a request is a few dozen bytes.</summary>
    public const int MaxRequestBytes = 4096;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
        // Read by people too: keep quotes and apostrophes as they are (the reply is JSON, never HTML).
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        // The generated metadata only: a reply type it lacks throws here, never falls back to reflection (AOT has none).
        TypeInfoResolver = ControlJsonContext.Default,
    };

    private static readonly JsonDocumentOptions RequestOptions = new() { AllowDuplicateProperties = false };

    private static readonly (string Name, ControlCommand Command)[] Commands =
    [
        ("status", ControlCommand.Status),
        ("cache-show", ControlCommand.CacheShow),
        ("cache-flush", ControlCommand.CacheFlush),
        ("reload", ControlCommand.Reload),
    ];

    public static string NameOf(ControlCommand command) => Commands.First(c => c.Command == command).Name;

    /// <summary>The request line for <paramref name="command"/> (newline not included).</summary>
    public static string FormatRequest(ControlCommand command) => "{\"command\":\"" + NameOf(command) + "\"}";

    /// <summary>Parses one request line; on failure <paramref name="error"/> says why, fit for the error reply.</summary>
    public static bool TryParseRequest(ReadOnlySpan<byte> line, out ControlCommand command, out string error)
    {
        command = default;
        if (line.Length > MaxRequestBytes)
        {
            error = $"request longer than {MaxRequestBytes} bytes";
            return false;
        }

        string? name;
        try
        {
            // Parsed and checked whole inside the try: a duplicated key is refused here, never found later by a
            // lazily built JsonObject that throws on lookup.
            using var document = JsonDocument.Parse(line.ToArray(), RequestOptions);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = "a request is a JSON object, e.g. {\"command\":\"status\"}";
                return false;
            }

            if (!document.RootElement.TryGetProperty("command", out var value) || value.ValueKind != JsonValueKind.String)
            {
                error = "missing \"command\" (a string): one of " + string.Join(", ", Commands.Select(c => c.Name));
                return false;
            }

            name = value.GetString() ?? "";
        }
        catch (JsonException e)
        {
            error = "malformed JSON: " + FirstSentence(e.Message);
            return false;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // Invalid UTF-8 surfaces as ArgumentException (or InvalidOperationException from GetString).
            error = "malformed JSON: not UTF-8";
            return false;
        }

        foreach (var (known, parsed) in Commands)
        {
            if (string.Equals(known, name, StringComparison.Ordinal))
            {
                command = parsed;
                error = "";
                return true;
            }
        }

        error = $"unknown command \"{Truncate(name, 64)}\"; expected one of {string.Join(", ", Commands.Select(c => c.Name))}";
        return false;
    }

    /// <summary>A success reply: <paramref name="body"/>'s properties beside <c>"ok":true</c>.</summary>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is not in <see cref="ControlJsonContext"/>.</exception>
    public static byte[] FormatOk<T>(T body)
    {
        var node = JsonSerializer.SerializeToNode(body, (JsonTypeInfo<T>)Json.GetTypeInfo(typeof(T))) as JsonObject ?? [];
        var reply = new JsonObject { ["ok"] = true };
        foreach (var (key, value) in node.ToList())
        {
            node.Remove(key);
            reply[key] = value;
        }

        return Line(reply);
    }

    public static byte[] FormatError(string error) => Line(new JsonObject { ["ok"] = false, ["error"] = error });

    /// <summary>Reads a reply line: the parsed object when <c>ok</c> is true, else the server's error (or why the line did not parse).</summary>
    public static bool TryParseReply(string line, out JsonObject reply, out string error)
    {
        reply = [];
        try
        {
            if (JsonNode.Parse(line) is JsonObject parsed)
            {
                reply = parsed;
                if (parsed["ok"] is JsonValue ok && ok.TryGetValue(out bool success) && success)
                {
                    error = "";
                    return true;
                }

                error = parsed["error"] is JsonValue e && e.TryGetValue(out string? message) ? message : "the reply carries no error text";
                return false;
            }
        }
        catch (JsonException e)
        {
            error = "malformed reply: " + FirstSentence(e.Message);
            return false;
        }

        error = "malformed reply: not a JSON object";
        return false;
    }

    private static byte[] Line(JsonObject reply) => Encoding.UTF8.GetBytes(reply.ToJsonString(Json) + "\n");

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length] + "...";

    private static string FirstSentence(string message)
    {
        var end = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (end > 0 ? message[..end] : message).TrimEnd('.', ' ');
    }
}
