namespace ProxySelection.Wire.Fuzz;

internal static class Program
{
    public static int Main(string[] args) => 0;
}
