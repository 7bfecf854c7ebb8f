using System.Text.Json;

namespace ProxySelection.Host.Tests;

/// <summary>The packet vectors of the repository (<see cref="RepositoryPaths.Vectors"/>, tests/vectors).</summary>
internal static class VectorFiles
{
    private static readonly Lazy<string?> Located = new(Locate);

    public static string? DirectoryOrNull => Located.Value;

    /// <summary>The vectors directory; a missing one fails the calling test (a skipped vector test would prove nothing).</summary>
    public static string RequireDirectory()
    {
        if (Located.Value is { } dir)
        {
            return dir;
        }

        Assert.Fail($"vectors not found: {RepositoryPaths.Vectors} has no *.jsonl");
        return null!;
    }

    /// <summary>Every record of every *.jsonl file, in file then line order.</summary>
    public static IEnumerable<VectorRecord> Records()
    {
        var dir = RequireDirectory();
        foreach (var file in Directory.GetFiles(dir, "*.jsonl").Order(StringComparer.Ordinal))
        {
            foreach (var line in File.ReadLines(file))
            {
                if (!string.IsNullOrWhiteSpace(line))
                {
                    yield return new VectorRecord(file, JsonDocument.Parse(line).RootElement.Clone());
                }
            }
        }
    }

    /// <summary>Test case source: one case per vector packet, named by its id; one failing case when the folder is missing.</summary>
    public static IEnumerable<TestCaseData> RecordCases()
    {
        if (DirectoryOrNull is null)
        {
            yield return new TestCaseData(null!).SetName("VectorsDirectoryMissing");
            yield break;
        }

        foreach (var record in Records())
        {
            yield return new TestCaseData(record).SetName(record.Id);
        }
    }

    private static string? Locate()
    {
        var directory = RepositoryPaths.Vectors;
        return Directory.Exists(directory) && Directory.EnumerateFiles(directory, "*.jsonl").Any() ? directory : null;
    }
}

/// <summary>One line of a vectors *.jsonl file.</summary>
public sealed class VectorRecord
{
    internal VectorRecord(string file, JsonElement json)
    {
        File = file;
        Json = json;
    }

    public string File { get; }

    public JsonElement Json { get; }

    public string Id => Json.GetProperty("id").GetString()!;

    public byte[] Packet => Convert.FromHexString(Json.GetProperty("hex").GetString()!);

    public string PcapPath => Path.Combine(Path.GetDirectoryName(File)!, Json.GetProperty("pcap").GetString()!);

    public int Frame => Json.GetProperty("frame").GetInt32();

    public override string ToString() => Id;
}
