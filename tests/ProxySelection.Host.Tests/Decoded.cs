using ProxySelection.Wire.Json;
using System.Text.Json;

namespace ProxySelection.Host.Tests;

/// <summary>Runs our decoder on packets and parses the JSON lines it prints.</summary>
internal static class Decoded
{
    public static JsonElement Packet(ReadOnlySpan<byte> packet)
    {
        using var stream = new MemoryStream();
        using (var lines = new JsonLines(stream))
        {
            lines.WritePacket(packet, frame: null);
        }

        return Lines(stream.ToArray()).Single();
    }

    public static List<JsonElement> Lines(byte[] output)
    {
        var text = System.Text.Encoding.UTF8.GetString(output);
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement.Clone())
            .ToList();
    }

    /// <summary>JSON values compared by their text, so 64-bit integers are compared exactly.</summary>
    public static bool SameJson(JsonElement a, JsonElement b) => a.ValueKind == b.ValueKind && a.ValueKind switch
    {
        JsonValueKind.Object => a.EnumerateObject().Count() == b.EnumerateObject().Count()
                                && a.EnumerateObject().All(p => b.TryGetProperty(p.Name, out var q) && SameJson(p.Value, q)),
        JsonValueKind.Array => a.GetArrayLength() == b.GetArrayLength()
                               && a.EnumerateArray().Zip(b.EnumerateArray()).All(t => SameJson(t.First, t.Second)),
        _ => a.GetRawText() == b.GetRawText(),
    };
}
