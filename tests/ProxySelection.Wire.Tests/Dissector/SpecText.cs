using System.Globalization;

namespace ProxySelection.Wire.Tests.Dissector;

/// <summary>
/// Reads the expected values for the dissector tests from the spec itself: Appendix A's vector table and the
/// Section 5.4 table of message kinds. The repository root is the directory holding ProxySelection.sln.
/// </summary>
internal static class SpecText
{
    public const string SpecFile = "draft-proxyselection-mptcp-proxy-selection.md";

    public sealed record Vector(string Name, string Form, string Message, string Priority, string ProxyId, string Flow, string KeyId, string Hex)
    {
        public byte[] Bytes => Convert.FromHexString(Hex);

        /// <summary>Flows named "*-synack" are options carried on a SYN/ACK (Appendix A).</summary>
        public bool OnSynAck => Flow.EndsWith("-synack", StringComparison.Ordinal);
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ProxySelection.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new FileNotFoundException("ProxySelection.sln not found above " + AppContext.BaseDirectory);
    }

    public static string DissectorPath() => Path.Combine(RepositoryRoot(), "spec", "wireshark", "mp_proxy.lua");

    public static IReadOnlyList<Vector> Vectors() =>
        Rows(Section("## Appendix A.", "## Appendix B."))
            .Where(c => c.Length == 8 && c[7].Length > 0 && c[7].All(char.IsAsciiHexDigitLower) && c[0] != "name")
            .Select(c => new Vector(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]))
            .ToList();

    /// <summary>Message name to its number, as the "Msg" column of Section 5.4 gives it.</summary>
    public static IReadOnlyDictionary<string, string> MessageKinds() =>
        Rows(Section("### 5.4.", "### 5.5."))
            .Where(c => c.Length == 4 && int.TryParse(c[0], NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .ToDictionary(c => c[1], c => c[0], StringComparer.Ordinal);

    private static IEnumerable<string[]> Rows(string section) =>
        section.Split('\n')
            .Where(line => line.StartsWith("| ", StringComparison.Ordinal))
            .Select(line => line.Trim().Trim('|').Split('|').Select(c => c.Trim().Trim('`')).ToArray());

    private static string Section(string heading, string next)
    {
        string text = File.ReadAllText(Path.Combine(RepositoryRoot(), "spec", SpecFile));
        int start = text.IndexOf("\n" + heading, StringComparison.Ordinal);
        int end = text.IndexOf("\n" + next, StringComparison.Ordinal);
        return start >= 0 && end > start ? text[start..end] : throw new InvalidDataException($"the spec has no '{heading}' before '{next}'");
    }
}
