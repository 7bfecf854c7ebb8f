namespace ProxySelection.Wire.Tests;

/// <summary>The real packets of the public vector set (copied from shared/vectors/*.jsonl, field hex).</summary>
internal static class VectorPackets
{
    private static readonly Lazy<IReadOnlyList<(string Id, byte[] Packet)>> All = new(Load);

    public static IReadOnlyList<(string Id, byte[] Packet)> Packets => All.Value;

    public static IEnumerable<TestCaseData> Cases =>
        Packets.Select(p => new TestCaseData(p.Packet).SetArgDisplayNames(p.Id));

    public static byte[] Get(string id) => Packets.Single(p => p.Id == id).Packet;

    private static List<(string Id, byte[] Packet)> Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Vectors", "packets.txt");
        return File.ReadLines(path)
            .Where(line => line.Length > 0 && line[0] != '#')
            .Select(line => line.Split(' '))
            .Select(parts => (parts[0], Convert.FromHexString(parts[1])))
            .ToList();
    }
}
