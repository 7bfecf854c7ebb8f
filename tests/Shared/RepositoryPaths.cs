namespace ProxySelection.Tests;

/// <summary>
/// Folders of this clone, found by walking up from the test assembly to the directory holding ProxySelection.sln.
/// Tests read nothing outside the clone. Linked into every test project by tests/Directory.Build.props.
/// </summary>
internal static class RepositoryPaths
{
    private const string SolutionFile = "ProxySelection.sln";

    private static readonly Lazy<string> RootDirectory = new(FindRoot);

    /// <summary>The clone's top directory.</summary>
    public static string Root => RootDirectory.Value;

    /// <summary>The real-kernel packet vectors (pcap, and JSONL with tshark's fields; see its README.md).</summary>
    public static string Vectors => Path.Combine(Root, "tests", "vectors");

    public static string Samples => Path.Combine(Root, "samples");

    public static string Spec => Path.Combine(Root, "spec");

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, SolutionFile)))
            {
                return directory.FullName;
            }
        }

        throw new FileNotFoundException($"{SolutionFile} not found above {AppContext.BaseDirectory}");
    }
}
