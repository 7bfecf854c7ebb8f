using System.Text.Json;

namespace ProxySelection.Wire.Tests;

/// <summary>The real packets of the repository's vector set (tests/vectors/*.jsonl: id and hex, in file then line order).</summary>
internal static class VectorPackets
{
    private static readonly Lazy<IReadOnlyList<(string Id, byte[] Packet)>> All = new(Load);

    public static IReadOnlyList<(string Id, byte[] Packet)> Packets => All.Value;

    public static IEnumerable<TestCaseData> Cases =>
        Packets.Select(p => new TestCaseData(p.Packet).SetArgDisplayNames(p.Id));

    public static byte[] Get(string id) => Packets.Single(p => p.Id == id).Packet;

    private static List<(string Id, byte[] Packet)> Load()
    {
        var packets = new List<(string Id, byte[] Packet)>();
        foreach (var file in Directory.GetFiles(RepositoryPaths.Vectors, "*.jsonl").Order(StringComparer.Ordinal))
        {
            foreach (var line in File.ReadLines(file).Where(line => !string.IsNullOrWhiteSpace(line)))
            {
                using var record = JsonDocument.Parse(line);
                var root = record.RootElement;
                packets.Add((root.GetProperty("id").GetString()!, Convert.FromHexString(root.GetProperty("hex").GetString()!)));
            }
        }

        // An empty source would leave the vector tests with no cases: passing by proving nothing.
        return packets.Count > 0 ? packets : throw new FileNotFoundException("no vector packets in " + RepositoryPaths.Vectors);
    }
}
